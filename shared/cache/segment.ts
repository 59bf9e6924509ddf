import { createHash } from 'node:crypto';
import { handsOver, sha256FramesOffThread } from './hash-thread.js';
import { endianness } from 'node:os';
import {
  BadMagicError,
  ChecksumMismatchError,
  JobMismatchError,
  ModelHashMismatchError,
  SegmentMalformedError,
  SegmentMismatchError,
  SegmentTruncatedError,
  UnsupportedVersionError,
} from './errors.js';
import { f16ToF32, f32ToF16 } from './f16.js';

/**
 * Cache segment: the K/V one chunk added, as stored at jobs/{tenant}/{job}/cache/{k}.kv.
 *
 * Layout, little-endian (version 2, written now):
 *   magic "CA2VDMKV" (8) | version u16 | dtype u8 (1 f16, 2 f32) | ndim u8 | shape u32 x ndim
 *   | model SHA-256 (32 raw bytes) | job: u16 length + utf8 | chunk i32 (-1 = prefix)
 *   | first frame u32 | payload bytes u64 | SHA-256 of each frame's bytes (32 x F)
 *   | header SHA-256 (32) | payload
 * Version 1 (still read) has one SHA-256 of the whole payload where version 2 has one per frame.
 * The header hash covers every header byte before it (the frame hashes included), so one check
 * vouches for the identity fields and every frame's hash; identity is then compared before any
 * payload is read, so a misplaced segment fails cheaply. Payload: row-major
 * [F, depth, 2, B, N, width], frames outermost, so a reader fetches and verifies only the frames its
 * window needs (a byte range), each as it arrives. A later version (a second cache, say) adds its
 * fields before the header hash and a new version number; readers reject versions they do not know.
 */

export const SEGMENT_MAGIC = Buffer.from('CA2VDMKV', 'ascii');
export const SEGMENT_VERSION = 2;
const READABLE_VERSIONS = [1, 2];
/** Chunk index of the segment holding the job's starting frames. */
export const PREFIX_CHUNK = -1;
const MAX_JOB_BYTES = 1024;
const DTYPE_CODES = { float16: 1, float32: 2 } as const;

export type SegmentDtype = keyof typeof DTYPE_CODES;
/** [frames, depth, 2 (k, v), batch, tokens, width] */
export type KvShape = readonly [number, number, number, number, number, number];

export interface SegmentMeta {
  /** SHA-256 (hex) of the ONNX file that made these K/V. */
  modelSha: string;
  job: string;
  /** Chunk index, or PREFIX_CHUNK for the starting frames. */
  chunk: number;
  /** Global index of the segment's first frame. */
  firstFrame: number;
  shape: KvShape;
}

export interface SegmentHeader extends SegmentMeta {
  version: number;
  dtype: SegmentDtype;
  headerBytes: number;
  payloadBytes: number;
  /** Bytes of one frame's K/V; frame f is at headerBytes + f * frameBytes. */
  frameBytes: number;
  /** Version 2: SHA-256 of each frame. */
  frameShas?: Buffer[];
  /** Version 1: SHA-256 of the whole payload. */
  payloadSha?: Buffer;
}

export interface DecodedSegment {
  meta: SegmentHeader;
  data: Float32Array;
}

/** What the reader requires of a segment; any difference is a typed error. */
export interface SegmentExpectation {
  modelSha: string;
  job: string;
  chunk?: number;
  /** Shape of one frame: [depth, 2, batch, tokens, width]. */
  frameShape?: readonly number[];
}

const sha256 = (...parts: Uint8Array[]) => {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
};

/** K/V values: floats, or fp16 bits (as the step graph emits them when kv_dtype is float16). */
export type KvData = Float32Array | Uint16Array;

/**
 * Serializes one segment; `data` holds prod(shape) values, stored as `dtype` (fp16 by default):
 * floats, or fp16 bits already (a Uint16Array, as the step graph emits them), stored as they are.
 */
export function encodeSegment(data: KvData, meta: SegmentMeta, dtype: SegmentDtype = 'float16'): Buffer {
  const payload = segmentPayload(data, meta, dtype);
  const frameBytes = payload.byteLength / meta.shape[0];
  const shas = Array.from({ length: meta.shape[0] }, (_, f) => sha256(payload.subarray(f * frameBytes, (f + 1) * frameBytes)));
  const header = encodeSegmentHeader(meta, dtype, shas);
  return Buffer.concat([header, payload]);
}

/**
 * The segment as two parts to store one after the other, the payload a view of `data` (fp16 bits or
 * floats stored as they are) rather than a copy; each frame is hashed once. With `handOver` (the
 * caller gives `data` up: it is detached, and the payload is the same memory handed back), a large
 * payload is hashed on a second thread (hash-thread.ts); otherwise on this one, in slices between
 * which the event loop runs (sha256Sliced). Either way a large segment stored while the next chunk
 * runs neither copies its K/V nor holds up that chunk's model calls for long.
 */
export async function encodeSegmentParts(
  data: KvData, meta: SegmentMeta, dtype: SegmentDtype = 'float16', options: { handOver?: boolean } = {},
): Promise<{ header: Buffer; payload: Buffer }> {
  let payload = segmentPayload(data, meta, dtype);
  const frames = meta.shape[0];
  const frameBytes = payload.byteLength / frames;
  let shas: Buffer[] = [];
  if (options.handOver && handsOver(payload)) {
    const hashed = await sha256FramesOffThread(payload, frames);
    payload = Buffer.from(hashed.bytes.buffer, hashed.bytes.byteOffset, hashed.bytes.byteLength);
    shas = hashed.shas;
  } else {
    for (let f = 0; f < frames; f++) shas.push(await sha256Sliced(payload.subarray(f * frameBytes, (f + 1) * frameBytes)));
  }
  return { header: encodeSegmentHeader(meta, dtype, shas), payload };
}

/** Bytes hashed between two turns of the event loop by sha256Sliced: a quarter of a millisecond of work, the most a model call's completion waits for it. */
const HASH_SLICE = 1 << 18;

/**
 * SHA-256 of `bytes` on this thread, a slice at a time with the event loop let through between
 * slices: no copy of the bytes (WebCrypto copies its input before hashing it on the thread pool,
 * which for a 264 MB segment is a quarter second of the event loop's time and as much memory).
 */
export async function sha256Sliced(bytes: Uint8Array): Promise<Buffer> {
  const h = createHash('sha256');
  for (let o = 0; o < bytes.byteLength; o += HASH_SLICE) {
    if (o > 0) await new Promise<void>((r) => setImmediate(r));
    h.update(bytes.subarray(o, Math.min(o + HASH_SLICE, bytes.byteLength)));
  }
  return h.digest();
}

/** Checks `meta` and `data` and returns the payload bytes (a view where the stored type is `data`'s own). */
function segmentPayload(data: KvData, meta: SegmentMeta, dtype: SegmentDtype): Buffer {
  if (data instanceof Uint16Array && dtype !== 'float16') throw new RangeError('encodeSegment: fp16 bits can only be stored as float16');
  const { shape } = meta;
  if (shape.length !== 6 || shape[2] !== 2 || !shape.every((d) => Number.isInteger(d) && d > 0 && d <= 0xffffffff)) {
    throw new RangeError(`segment shape must be [F, depth, 2, B, N, width] of positive u32, got [${shape}]`);
  }
  const count = shape.reduce((a, b) => a * b, 1);
  if (data.length !== count) throw new RangeError(`segment data has ${data.length} floats, shape needs ${count}`);
  return data instanceof Uint16Array
    ? Buffer.from(data.buffer, data.byteOffset, data.byteLength)
    : dtype === 'float16'
    ? Buffer.from(f32ToF16(data).buffer)
    : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}

/** The version-2 header of a segment of `meta` whose frames hash to `frameShas`. */
function encodeSegmentHeader(meta: SegmentMeta, dtype: SegmentDtype, frameShas: readonly Uint8Array[]): Buffer {
  const { shape } = meta;
  if (!/^[0-9a-f]{64}$/.test(meta.modelSha)) throw new RangeError('modelSha must be 64 lower-case hex digits');
  const job = Buffer.from(meta.job, 'utf8');
  if (job.length === 0 || job.length > MAX_JOB_BYTES) throw new RangeError('job id must be 1-1024 utf8 bytes');
  if (!Number.isInteger(meta.chunk) || meta.chunk < PREFIX_CHUNK || meta.chunk > 0x7fffffff) {
    throw new RangeError(`chunk must be an int32 >= -1, got ${meta.chunk}`);
  }
  if (!Number.isInteger(meta.firstFrame) || meta.firstFrame < 0 || meta.firstFrame > 0xffffffff) {
    throw new RangeError(`firstFrame must be a u32, got ${meta.firstFrame}`);
  }
  const payloadBytes = shape.reduce((a, b) => a * b, 1) * (dtype === 'float16' ? 2 : 4);
  const headerBytes = 8 + 2 + 1 + 1 + 4 * 6 + 32 + 2 + job.length + 4 + 4 + 8 + 32 * frameShas.length + 32;
  const out = Buffer.alloc(headerBytes);
  let o = SEGMENT_MAGIC.copy(out, 0);
  o = out.writeUInt16LE(SEGMENT_VERSION, o);
  o = out.writeUInt8(DTYPE_CODES[dtype], o);
  o = out.writeUInt8(shape.length, o);
  for (const d of shape) o = out.writeUInt32LE(d, o);
  o += Buffer.from(meta.modelSha, 'hex').copy(out, o);
  o = out.writeUInt16LE(job.length, o);
  o += job.copy(out, o);
  o = out.writeInt32LE(meta.chunk, o);
  o = out.writeUInt32LE(meta.firstFrame, o);
  o = out.writeBigUInt64LE(BigInt(payloadBytes), o);
  for (const h of frameShas) o += Buffer.from(h.buffer, h.byteOffset, h.byteLength).copy(out, o);
  sha256(out.subarray(0, o)).copy(out, o);
  return out;
}

/** SHA-256 on libuv's thread pool (WebCrypto), so hashing a large payload never blocks the event loop. */
export async function sha256Async(bytes: Uint8Array): Promise<Buffer> {
  return Buffer.from(await globalThis.crypto.subtle.digest('SHA-256', bytes as Uint8Array<ArrayBuffer>));
}

/** Throws ChecksumMismatchError unless `bytes` are frame `f` of the segment `meta` describes (version 2). */
export async function verifySegmentFrame(meta: SegmentHeader, f: number, bytes: Uint8Array): Promise<void> {
  checkFrameBytes(meta, bytes);
  if (!(await sha256Async(bytes)).equals(meta.frameShas![f])) throw new ChecksumMismatchError('payload');
}

/**
 * verifySegmentFrame on the calling thread: no copy of the frame (WebCrypto copies its input before
 * hashing it on the thread pool). For a reader whose other frames are meanwhile read on the pool.
 */
export function verifySegmentFrameSync(meta: SegmentHeader, f: number, bytes: Uint8Array): void {
  checkFrameBytes(meta, bytes);
  if (!sha256(bytes).equals(meta.frameShas![f])) throw new ChecksumMismatchError('payload');
}

function checkFrameBytes(meta: SegmentHeader, bytes: Uint8Array): void {
  if (!meta.frameShas) throw new RangeError('verifySegmentFrame: a version-1 segment has no frame hashes');
  if (bytes.byteLength !== meta.frameBytes) throw new SegmentTruncatedError(meta.frameBytes, bytes.byteLength);
}

/** Parses and verifies the header alone (its own hash), e.g. from a ranged read of the first bytes. */
export function decodeSegmentHeader(buf: Uint8Array): SegmentHeader {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  const need = (n: number) => {
    if (b.length < n) throw new SegmentTruncatedError(n, b.length);
  };
  need(SEGMENT_MAGIC.length);
  if (!b.subarray(0, SEGMENT_MAGIC.length).equals(SEGMENT_MAGIC)) throw new BadMagicError();
  need(12);
  const version = b.readUInt16LE(8);
  if (!READABLE_VERSIONS.includes(version)) throw new UnsupportedVersionError(version);
  const code = b.readUInt8(10);
  const dtype = (Object.keys(DTYPE_CODES) as SegmentDtype[]).find((k) => DTYPE_CODES[k] === code);
  const ndim = b.readUInt8(11);
  let o = 12;
  need(o + 4 * ndim + 32 + 2);
  const shape: number[] = [];
  for (let i = 0; i < ndim; i++, o += 4) shape.push(b.readUInt32LE(o));
  const modelSha = b.toString('hex', o, o + 32);
  o += 32;
  const jobLen = b.readUInt16LE(o);
  o += 2;
  // Version 2 has one hash per frame: shape[0] of them (ndim is checked below, after the hash).
  const hashes = version === 1 ? 1 : (ndim > 0 ? shape[0] : 0);
  need(o + jobLen + 4 + 4 + 8 + 32 * hashes + 32);
  const job = b.toString('utf8', o, o + jobLen);
  o += jobLen;
  const chunk = b.readInt32LE(o);
  const firstFrame = b.readUInt32LE(o + 4);
  const payloadBig = b.readBigUInt64LE(o + 8);
  o += 16;
  const shas = Array.from({ length: hashes }, (_, i) => Buffer.from(b.subarray(o + 32 * i, o + 32 * (i + 1))));
  o += 32 * hashes;
  // Hash before trusting any field: a flipped bit in the shape or job must read as corruption.
  if (!sha256(b.subarray(0, o)).equals(b.subarray(o, o + 32))) throw new ChecksumMismatchError('header');
  o += 32;

  if (dtype === undefined) throw new SegmentMalformedError(`unknown dtype code ${code}`);
  if (ndim !== 6 || shape[2] !== 2 || shape.some((d) => d === 0)) {
    throw new SegmentMalformedError(`shape [${shape}] is not [F, depth, 2, B, N, width]`);
  }
  const floats = shape.reduce((a, d) => a * d, 1);
  const payloadBytes = floats * (dtype === 'float16' ? 2 : 4);
  if (payloadBig !== BigInt(payloadBytes)) {
    throw new SegmentMalformedError(`payload length ${payloadBig} does not match shape [${shape}]`);
  }
  const kvShape = shape as unknown as KvShape;
  const frameBytes = payloadBytes / shape[0];
  const hashed = version === 1 ? { payloadSha: shas[0] } : { frameShas: shas };
  return { version, dtype, shape: kvShape, modelSha, job, chunk, firstFrame, headerBytes: o, payloadBytes, frameBytes, ...hashed };
}

/** Parses, verifies (header, identity, payload) and widens a segment to float32. */
export function decodeSegment(buf: Uint8Array, expected: SegmentExpectation): DecodedSegment {
  const { meta, data } = decodeSegmentBits(buf, expected);
  return { meta, data: data instanceof Uint16Array ? f16ToF32(data) : data };
}

/** As decodeSegment, but a float16 payload comes back as its fp16 bits (half the memory, the same values). */
export function decodeSegmentBits(buf: Uint8Array, expected: SegmentExpectation): { meta: SegmentHeader; data: KvData } {
  const meta = decodeSegmentHeader(buf);
  checkSegmentIdentity(meta, expected);
  const end = meta.headerBytes + meta.payloadBytes;
  if (buf.byteLength < end) throw new SegmentTruncatedError(end, buf.byteLength);
  if (buf.byteLength > end) throw new SegmentMalformedError(`${buf.byteLength - end} bytes after the payload`);
  // Copy into a fresh, aligned ArrayBuffer: the input may sit at any offset of a pooled buffer,
  // and typed-array views need element alignment. (Buffer#slice would not copy.)
  const payload = new Uint8Array(meta.payloadBytes);
  payload.set(buf.subarray(meta.headerBytes, end));
  if (meta.payloadSha ? !sha256(payload).equals(meta.payloadSha) : meta.frameShas!.some((h, f) =>
    !sha256(payload.subarray(f * meta.frameBytes, (f + 1) * meta.frameBytes)).equals(h))) {
    throw new ChecksumMismatchError('payload');
  }
  const data =
    meta.dtype === 'float16'
      ? new Uint16Array(payload.buffer, 0, meta.payloadBytes / 2)
      : new Float32Array(payload.buffer, 0, meta.payloadBytes / 4);
  return { meta, data };
}

/** Throws the typed mismatch error unless the header belongs where `expected` says. */
export function checkSegmentIdentity(meta: SegmentHeader, expected: SegmentExpectation): void {
  if (meta.modelSha !== expected.modelSha.toLowerCase()) throw new ModelHashMismatchError(expected.modelSha, meta.modelSha);
  if (meta.job !== expected.job) throw new JobMismatchError(expected.job, meta.job);
  if (expected.chunk !== undefined && meta.chunk !== expected.chunk) {
    throw new SegmentMismatchError('chunk', String(expected.chunk), String(meta.chunk));
  }
  const frameShape = meta.shape.slice(1);
  if (expected.frameShape && frameShape.join() !== expected.frameShape.join()) {
    throw new SegmentMismatchError('shape', `[${expected.frameShape}]`, `[${frameShape}]`);
  }
}
