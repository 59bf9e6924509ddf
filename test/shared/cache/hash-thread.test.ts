import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { HAND_OVER_BYTES, handsOver, sha256FramesOffThread, stopHashingThread } from '../../../shared/cache/hash-thread.js';
import { decodeSegmentHeader, encodeSegmentParts, sha256Sliced, type SegmentMeta } from '../../../shared/cache/segment.js';

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest();

function bytes(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed;
  for (let i = 0; i < n; i++) { x = (x * 1103515245 + 12345) >>> 0; out[i] = x >>> 24; }
  return out;
}

describe('hashing a large payload on the hashing thread', () => {
  it('gives each frame its SHA-256 and hands the same bytes back, the caller\'s view detached', async () => {
    const frames = 4;
    const data = bytes(HAND_OVER_BYTES, 7);
    const copy = Uint8Array.from(data);
    const { bytes: back, shas } = await sha256FramesOffThread(data, frames);
    expect(data.byteLength).toBe(0); // handed over: the caller's view no longer reaches the memory
    expect(Buffer.from(back).equals(Buffer.from(copy))).toBe(true);
    const frameBytes = copy.byteLength / frames;
    expect(shas.map((s) => s.toString('hex'))).toEqual(
      Array.from({ length: frames }, (_, f) => sha(copy.subarray(f * frameBytes, (f + 1) * frameBytes)).toString('hex')));
  });

  it('runs several hashes at once, each answered with its own bytes', async () => {
    const inputs = [1, 2, 3].map((seed) => bytes(HAND_OVER_BYTES + 2 * seed, seed));
    const copies = inputs.map((b) => Uint8Array.from(b));
    const results = await Promise.all(inputs.map((b) => sha256FramesOffThread(b, 2)));
    results.forEach((r, i) => {
      expect(Buffer.from(r.bytes).equals(Buffer.from(copies[i]))).toBe(true);
      expect(r.shas[1].equals(sha(copies[i].subarray(copies[i].byteLength / 2)))).toBe(true);
    });
  });

  it('takes only the whole of a large plain ArrayBuffer, in whole frames', () => {
    expect(handsOver(new Uint8Array(HAND_OVER_BYTES))).toBe(true);
    expect(handsOver(new Uint8Array(HAND_OVER_BYTES - 1))).toBe(false); // small: hashed where it is
    expect(handsOver(new Uint8Array(new ArrayBuffer(HAND_OVER_BYTES + 8), 8))).toBe(false); // part of a buffer others may hold
    expect(handsOver(new Uint8Array(new ArrayBuffer(HAND_OVER_BYTES + 8), 0, HAND_OVER_BYTES))).toBe(false);
    expect(handsOver(new Uint8Array(new SharedArrayBuffer(HAND_OVER_BYTES)))).toBe(false);
    expect(() => sha256FramesOffThread(new Uint8Array(16), 1)).toThrow(/whole of an ArrayBuffer/);
    expect(() => sha256FramesOffThread(new Uint8Array(HAND_OVER_BYTES), 3)).toThrow(/do not divide into 3 frames/);
    expect(() => sha256FramesOffThread(new Uint8Array(HAND_OVER_BYTES), 0)).toThrow(/into 0 frames/);
    // Counts that divide the bytes but are no count of frames.
    expect(() => sha256FramesOffThread(new Uint8Array(HAND_OVER_BYTES), -1)).toThrow(/into -1 frames/);
    expect(() => sha256FramesOffThread(new Uint8Array(HAND_OVER_BYTES), 0.5)).toThrow(/into 0.5 frames/);
  });

  it('keeps the process alive while a hash is out, and only then', async () => {
    // An idle thread is unref'd; while it holds a hash its port is one more resource that keeps the event loop alive.
    const held = () => process.getActiveResourcesInfo().filter((r) => r === 'MessagePort').length;
    await sha256FramesOffThread(bytes(HAND_OVER_BYTES, 1), 1); // the thread exists
    const idle = held();
    // One hash out: held.
    const one = sha256FramesOffThread(bytes(HAND_OVER_BYTES, 4), 1);
    expect(held()).toBe(idle + 1);
    await one;
    expect(held()).toBe(idle);
    // Hashed in the order sent: the small one is answered while the large one (64 MiB) is still out.
    const small = sha256FramesOffThread(bytes(HAND_OVER_BYTES, 2), 1);
    const large = sha256FramesOffThread(new Uint8Array(16 * HAND_OVER_BYTES), 2);
    expect(held()).toBe(idle + 1);
    await small;
    expect(held()).toBe(idle + 1);
    await large;
    expect(held()).toBe(idle);
  });

  it('fails the hashes a thread held when it ends, and starts a new thread for the next', async () => {
    const out = sha256FramesOffThread(new Uint8Array(32 * HAND_OVER_BYTES), 4);
    await stopHashingThread();
    await expect(out).rejects.toThrow(/hashing thread exited with code 1/);
    const data = bytes(HAND_OVER_BYTES, 3);
    const copy = Uint8Array.from(data);
    const { shas } = await sha256FramesOffThread(data, 1);
    expect(shas[0].equals(sha(copy))).toBe(true);
  });
});

describe('a segment whose K/V is handed over', () => {
  const frameFloats = 2 * 2 * 1 * 64 * 128; // [depth 2, kv 2, batch 1, tokens 64, width 128]
  const frames = Math.ceil(HAND_OVER_BYTES / (frameFloats * 2)) + 1;
  const meta: SegmentMeta = { modelSha: 'ab'.repeat(32), job: 'job', chunk: 3, firstFrame: 24, shape: [frames, 2, 2, 1, 64, 128] };

  it('is the same bytes as one hashed on this thread', async () => {
    const bits = new Uint16Array(frames * frameFloats).map((_, i) => 0x3c00 | (i % 1021));
    const here = await encodeSegmentParts(Uint16Array.from(bits), meta);
    const given = Uint16Array.from(bits);
    const there = await encodeSegmentParts(given, meta, 'float16', { handOver: true });
    expect(given.byteLength).toBe(0); // the hashing thread had it
    expect(there.header.equals(here.header)).toBe(true);
    expect(there.payload.equals(here.payload)).toBe(true);
    expect(decodeSegmentHeader(there.header).frameShas).toHaveLength(frames);
  });

  it('stays where it is when it is part of a larger buffer', async () => {
    const backing = new Uint16Array(frames * frameFloats + 4);
    const view = backing.subarray(4);
    view.fill(0x3c01);
    const parts = await encodeSegmentParts(view, meta, 'float16', { handOver: true });
    expect(view.byteLength).toBe(frames * frameFloats * 2); // not detached
    expect(parts.payload.buffer).toBe(backing.buffer);
  });
});

describe('hashing on this thread, a slice at a time', () => {
  /** The digest of `data` by sha256Sliced, and how many turns the event loop took meanwhile. */
  async function slicedTurns(data: Uint8Array): Promise<number> {
    let turns = 0;
    let counting = true;
    const tick = () => { if (counting) { turns++; setImmediate(tick); } };
    setImmediate(tick);
    const digest = await sha256Sliced(data);
    counting = false;
    expect(digest.equals(sha(data))).toBe(true);
    return turns;
  }

  it('gives the SHA-256 of the whole, letting the event loop turn once between two slices', async () => {
    expect(await slicedTurns(bytes(4 << 20, 11))).toBe(15); // 16 slices of 256 KiB
  });

  it('hashes one slice, or less, without giving up the event loop', async () => {
    expect(await slicedTurns(bytes(1 << 18, 12))).toBe(0); // exactly one slice
    expect(await slicedTurns(bytes(1000, 13))).toBe(0);
    expect(await slicedTurns(new Uint8Array(0))).toBe(0);
  });
});
