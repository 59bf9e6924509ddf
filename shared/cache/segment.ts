import { createHash } from 'node:crypto';
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
 * Layout, little-endian:
 *   magic "CA2VDMKV" (8) | version u16 | dtype u8 (1 f16, 2 f32) | ndim u8 | shape u32 x ndim
 *   | model SHA-256 (32 raw bytes) | job: u16 length + utf8 | chunk i32 (-1 = prefix)
 *   | first frame u32 | payload bytes u64 | payload SHA-256 (32) | header SHA-256 (32) | payload
 * The header hash covers every header byte before it (payload hash included), so one check vouches
 * for the identity fields and the payload hash; identity is then compared before the payload is
 * hashed, so a misplaced segment fails cheaply. Payload: row-major [F, depth, 2, B, N, width].
 */

// Payload bytes are the host's typed-array bytes; every platform Node ships for is little-endian.
if (endianness() !== 'LE') throw new Error('cache segment codec assumes a little-endian host');

export const SEGMENT_MAGIC = Buffer.from('CA2VDMKV', 'ascii');
export const SEGMENT_VERSION = 1;
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
  payloadSha: Buffer;
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
  if (data instanceof Uint16Array && dtype !== 'float16') throw new RangeError('encodeSegment: fp16 bits can only be stored as float16');
  const { shape } = meta;
  if (shape.length !== 6 || shape[2] !== 2 || !shape.every((d) => Number.isInteger(d) && d > 0 && d <= 0xffffffff)) {
    throw new RangeError(`segment shape must be [F, depth, 2, B, N, width] of positive u32, got [${shape}]`);
  }
  const count = shape.reduce((a, b) => a * b, 1);
  if (data.length !== count) throw new RangeError(`segment data has ${data.length} floats, shape needs ${count}`);
  if (!/^[0-9a-f]{64}$/.test(meta.modelSha)) throw new RangeError('modelSha must be 64 lower-case hex digits');
  const job = Buffer.from(meta.job, 'utf8');
  if (job.length === 0 || job.length > MAX_JOB_BYTES) throw new RangeError('job id must be 1-1024 utf8 bytes');
  if (!Number.isInteger(meta.chunk) || meta.chunk < PREFIX_CHUNK || meta.chunk > 0x7fffffff) {
    throw new RangeError(`chunk must be an int32 >= -1, got ${meta.chunk}`);
  }
  if (!Number.isInteger(meta.firstFrame) || meta.firstFrame < 0 || meta.firstFrame > 0xffffffff) {
    throw new RangeError(`firstFrame must be a u32, got ${meta.firstFrame}`);
  }

  const payload =
    data instanceof Uint16Array
      ? Buffer.from(data.buffer, data.byteOffset, data.byteLength)
      : dtype === 'float16'
      ? Buffer.from(f32ToF16(data).buffer)
      : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const headerBytes = 8 + 2 + 1 + 1 + 4 * 6 + 32 + 2 + job.length + 4 + 4 + 8 + 32 + 32;
  const out = Buffer.alloc(headerBytes + payload.length);
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
  o = out.writeBigUInt64LE(BigInt(payload.length), o);
  o += sha256(payload).copy(out, o);
  o += sha256(out.subarray(0, o)).copy(out, o);
  payload.copy(out, o);
  return out;
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
  if (version !== SEGMENT_VERSION) throw new UnsupportedVersionError(version);
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
  need(o + jobLen + 4 + 4 + 8 + 32 + 32);
  const job = b.toString('utf8', o, o + jobLen);
  o += jobLen;
  const chunk = b.readInt32LE(o);
  const firstFrame = b.readUInt32LE(o + 4);
  const payloadBig = b.readBigUInt64LE(o + 8);
  o += 16;
  const payloadSha = Buffer.from(b.subarray(o, o + 32));
  o += 32;
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
  return { version, dtype, shape: kvShape, modelSha, job, chunk, firstFrame, headerBytes: o, payloadBytes, payloadSha };
}

/** Parses, verifies (header, identity, payload) and widens a segment to float32. */
export function decodeSegment(buf: Uint8Array, expected: SegmentExpectation): DecodedSegment {
  const meta = decodeSegmentHeader(buf);
  if (meta.modelSha !== expected.modelSha.toLowerCase()) throw new ModelHashMismatchError(expected.modelSha, meta.modelSha);
  if (meta.job !== expected.job) throw new JobMismatchError(expected.job, meta.job);
  if (expected.chunk !== undefined && meta.chunk !== expected.chunk) {
    throw new SegmentMismatchError('chunk', String(expected.chunk), String(meta.chunk));
  }
  const frameShape = meta.shape.slice(1);
  if (expected.frameShape && frameShape.join() !== expected.frameShape.join()) {
    throw new SegmentMismatchError('shape', `[${expected.frameShape}]`, `[${frameShape}]`);
  }
  const end = meta.headerBytes + meta.payloadBytes;
  if (buf.byteLength < end) throw new SegmentTruncatedError(end, buf.byteLength);
  if (buf.byteLength > end) throw new SegmentMalformedError(`${buf.byteLength - end} bytes after the payload`);
  // Copy into a fresh, aligned ArrayBuffer: the input may sit at any offset of a pooled buffer,
  // and typed-array views need element alignment. (Buffer#slice would not copy.)
  const payload = new Uint8Array(meta.payloadBytes);
  payload.set(buf.subarray(meta.headerBytes, end));
  if (!sha256(payload).equals(meta.payloadSha)) throw new ChecksumMismatchError('payload');
  const data =
    meta.dtype === 'float16'
      ? f16ToF32(new Uint16Array(payload.buffer, 0, meta.payloadBytes / 2))
      : new Float32Array(payload.buffer, 0, meta.payloadBytes / 4);
  return { meta, data };
}
