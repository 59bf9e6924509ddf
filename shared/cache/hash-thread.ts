/**
 * SHA-256 of each frame of a large K/V payload on a second thread. The bytes are handed over (a
 * transfer, not a copy) and handed back with the digests, so the event loop neither hashes them nor
 * copies them: at the paper's size that is 264 MB a chunk hashed beside the next chunk's model
 * calls instead of between them (an onnxruntime-node call holds the event loop for its whole run).
 *
 * Only for bytes the caller owns outright: the view must span its whole ArrayBuffer, which is
 * detached while the thread holds it (handsOver says whether a view qualifies). One thread per
 * process, started on first use, not keeping the process alive while idle.
 */
import { Worker } from 'node:worker_threads';

/** Below this many bytes the hand-over costs more than it saves: hash on this thread. */
export const HAND_OVER_BYTES = 4 << 20;

// Plain JavaScript (a worker runs it as it is, whatever loader the parent uses).
const THREAD_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
parentPort.on('message', ({ id, buffer, frames }) => {
  const frameBytes = buffer.byteLength / frames;
  const shas = [];
  for (let f = 0; f < frames; f++) shas.push(createHash('sha256').update(new Uint8Array(buffer, f * frameBytes, frameBytes)).digest());
  parentPort.postMessage({ id, buffer, shas }, [buffer]);
});
`;

interface Waiting { resolve: (r: { bytes: Uint8Array; shas: Buffer[] }) => void; reject: (err: Error) => void }

/** The thread, and the hashes it holds (by message id). */
interface HashingThread { worker: Worker; waiting: Map<number, Waiting> }

let current: HashingThread | undefined;
let nextId = 0;

/** Whether `bytes` can be handed to the hashing thread: large, and the whole of a plain ArrayBuffer. */
export function handsOver(bytes: Uint8Array): boolean {
  // Spanning the whole buffer: its offset is 0.
  return bytes.byteLength >= HAND_OVER_BYTES && bytes.byteLength === bytes.buffer.byteLength && bytes.buffer instanceof ArrayBuffer;
}

/**
 * The SHA-256 of each of `frames` equal frames of `bytes`, hashed on the hashing thread. `bytes` is
 * detached (see handsOver); the same memory comes back as the result's `bytes`.
 */
export function sha256FramesOffThread(bytes: Uint8Array, frames: number): Promise<{ bytes: Uint8Array; shas: Buffer[] }> {
  if (!handsOver(bytes)) throw new RangeError('sha256FramesOffThread: the bytes must be the whole of an ArrayBuffer of at least HAND_OVER_BYTES');
  if (!Number.isInteger(frames) || frames <= 0 || bytes.byteLength % frames !== 0) throw new RangeError(`sha256FramesOffThread: ${bytes.byteLength} bytes do not divide into ${frames} frames`);
  const { worker, waiting } = hashingThread();
  const id = nextId++;
  const result = new Promise<{ bytes: Uint8Array; shas: Buffer[] }>((resolve, reject) => waiting.set(id, { resolve, reject }));
  // The process waits for the thread only while a hash is out.
  if (waiting.size === 1) worker.ref();
  worker.postMessage({ id, buffer: bytes.buffer, frames }, [bytes.buffer as ArrayBuffer]);
  return result;
}

function hashingThread(): HashingThread {
  if (current) return current;
  const worker = new Worker(THREAD_SOURCE, { eval: true });
  worker.unref();
  const waiting = new Map<number, Waiting>();
  worker.on('message', ({ id, buffer, shas }: { id: number; buffer: ArrayBuffer; shas: Uint8Array[] }) => {
    const w = waiting.get(id);
    if (!w) return; // an answer that crossed the thread's end: its hash has failed already
    waiting.delete(id);
    if (waiting.size === 0) worker.unref();
    w.resolve({ bytes: new Uint8Array(buffer), shas: shas.map((s) => Buffer.from(s.buffer, s.byteOffset, s.byteLength)) });
  });
  const fail = (err: Error) => {
    // A thread that dies (whatever it was doing: nothing in a hash of checked bytes throws) takes
    // the bytes it holds with it: each of its hashes fails (its segment write fails, and the
    // segment is rebuilt by its next reader); the next hash starts a new thread.
    if (current?.worker === worker) current = undefined;
    for (const w of waiting.values()) w.reject(err);
    waiting.clear();
  };
  worker.on('error', fail);
  worker.on('exit', (code) => fail(new Error(`hashing thread exited with code ${code}`)));
  current = { worker, waiting };
  return current;
}

/**
 * Ends the hashing thread now: hashes still waiting fail, as if it had died, and the next hash
 * starts a new thread. Nothing needs to call it (an idle thread does not keep the process alive).
 */
export async function stopHashingThread(): Promise<void> {
  await current?.worker.terminate();
}
