import { describe, expect, it } from 'vitest';
import {
  BadMagicError,
  ChecksumMismatchError,
  JobMismatchError,
  ModelHashMismatchError,
  SegmentMalformedError,
  SegmentMismatchError,
  SegmentTruncatedError,
  UnsupportedVersionError,
} from '../../../shared/cache/errors.js';
import { f16ToF32, f32ToF16 } from '../../../shared/cache/f16.js';
import { createHash } from 'node:crypto';
import {
  decodeSegment,
  decodeSegmentHeader,
  encodeSegment,
  encodeSegmentParts,
  verifySegmentFrame,
  verifySegmentFrameSync,
  PREFIX_CHUNK,
  type KvShape,
  type SegmentMeta,
} from '../../../shared/cache/segment.js';

const SHA = 'ab'.repeat(32);
const SHAPE: KvShape = [3, 2, 2, 2, 4, 8]; // F, depth, kv, B, N, width
const COUNT = SHAPE.reduce((a, b) => a * b, 1);
const META: SegmentMeta = { modelSha: SHA, job: 'job-ü1', chunk: 7, firstFrame: 31, shape: SHAPE };
const EXPECT = { modelSha: SHA, job: 'job-ü1' };

function data(): Float32Array {
  return new Float32Array(COUNT).map((_, i) => Math.sin(i * 0.37) * 3 + i * 1e-3);
}

/** Copy of `buf` with one byte XOR-ed. */
function flip(buf: Buffer, at: number): Buffer {
  const b = Buffer.from(buf);
  b[at] ^= 0x01;
  return b;
}

/** A version-1 segment as the codec wrote it before per-frame hashes: one SHA-256 of the payload. */
function encodeV1(payload: Buffer, meta: SegmentMeta, dtype: 'float16' | 'float32'): Buffer {
  const sha = (b: Buffer) => createHash('sha256').update(b).digest();
  const job = Buffer.from(meta.job);
  const head = Buffer.alloc(8 + 2 + 1 + 1 + 24 + 32 + 2 + job.length + 4 + 4 + 8 + 32);
  let o = head.write('CA2VDMKV', 0, 'ascii');
  o = head.writeUInt16LE(1, o);
  o = head.writeUInt8(dtype === 'float16' ? 1 : 2, o);
  o = head.writeUInt8(6, o);
  for (const d of meta.shape) o = head.writeUInt32LE(d, o);
  o += Buffer.from(meta.modelSha, 'hex').copy(head, o);
  o = head.writeUInt16LE(job.length, o);
  o += job.copy(head, o);
  o = head.writeInt32LE(meta.chunk, o);
  o = head.writeUInt32LE(meta.firstFrame, o);
  o = head.writeBigUInt64LE(BigInt(payload.length), o);
  sha(payload).copy(head, o);
  return Buffer.concat([head, sha(head), payload]);
}

describe('cache segment codec', () => {
  it('still reads version-1 segments (one payload hash), and catches their corruption', () => {
    const bits = f32ToF16(data());
    const v1 = encodeV1(Buffer.from(bits.buffer), META, 'float16');
    const { meta, data: y } = decodeSegment(v1, EXPECT);
    expect(meta).toMatchObject({ version: 1, chunk: 7, firstFrame: 31 });
    expect(meta.payloadSha).toBeDefined();
    expect(y).toEqual(f16ToF32(bits));
    expect(() => decodeSegment(flip(v1, v1.length - 3), EXPECT)).toThrow(ChecksumMismatchError);
  });

  it('hashes each frame: a frame verifies alone, and a flipped byte fails only its own frame', async () => {
    const buf = encodeSegment(data(), META);
    const meta = decodeSegmentHeader(buf);
    expect(meta.frameShas).toHaveLength(3);
    const frame = (b: Buffer, f: number) => b.subarray(meta.headerBytes + f * meta.frameBytes, meta.headerBytes + (f + 1) * meta.frameBytes);
    for (let f = 0; f < 3; f++) await verifySegmentFrame(meta, f, frame(buf, f));
    const bad = flip(buf, meta.headerBytes + meta.frameBytes + 3); // inside frame 1
    await verifySegmentFrame(meta, 0, frame(bad, 0));
    await expect(verifySegmentFrame(meta, 1, frame(bad, 1))).rejects.toBeInstanceOf(ChecksumMismatchError);
    await verifySegmentFrame(meta, 2, frame(bad, 2));
    await expect(verifySegmentFrame(meta, 0, frame(buf, 0).subarray(1))).rejects.toBeInstanceOf(SegmentTruncatedError);
    // The same checks on the calling thread (a cold read hashing one frame while the next is read).
    for (let f = 0; f < 3; f++) verifySegmentFrameSync(meta, f, frame(buf, f));
    verifySegmentFrameSync(meta, 0, frame(bad, 0));
    expect(() => verifySegmentFrameSync(meta, 1, frame(bad, 1))).toThrow(ChecksumMismatchError);
    expect(() => verifySegmentFrameSync(meta, 0, frame(buf, 0).subarray(1))).toThrow(SegmentTruncatedError);
  });

  it('encodes in parts to the same bytes, the payload a view of the K/V rather than a copy', async () => {
    const bits = f32ToF16(data());
    const { header, payload } = await encodeSegmentParts(bits, META);
    expect(Buffer.concat([header, payload]).equals(encodeSegment(bits, META))).toBe(true);
    expect(payload.buffer).toBe(bits.buffer);
  });

  it('round-trips float32 exactly with all metadata', () => {
    const x = data();
    const { meta, data: y } = decodeSegment(encodeSegment(x, META, 'float32'), { ...EXPECT, chunk: 7, frameShape: [2, 2, 2, 4, 8] });
    expect(y).toEqual(x);
    expect(meta).toMatchObject({ ...META, dtype: 'float32', version: 2, payloadBytes: COUNT * 4, frameBytes: (COUNT / 3) * 4 });
  });

  it('round-trips float16 (the default) to exactly the fp16-rounded values, at half the payload', () => {
    const x = data();
    const buf = encodeSegment(x, META);
    const { meta, data: y } = decodeSegment(buf, EXPECT);
    expect(meta.dtype).toBe('float16');
    expect(y).toEqual(f16ToF32(f32ToF16(x)));
    expect(buf.length).toBe(meta.headerBytes + COUNT * 2);
  });

  it('stores fp16 bits given as they are: the same bytes as encoding their floats', () => {
    const bits = f32ToF16(data());
    expect(encodeSegment(bits, META).equals(encodeSegment(f16ToF32(bits), META))).toBe(true);
    expect(() => encodeSegment(bits, META, 'float32')).toThrow(/only be stored as float16/);
  });

  it('keeps the prefix chunk index -1 and decodes from an unaligned view', () => {
    const buf = encodeSegment(data(), { ...META, chunk: PREFIX_CHUNK, firstFrame: 0 });
    const shifted = Buffer.alloc(buf.length + 1);
    buf.copy(shifted, 1);
    const { meta } = decodeSegment(shifted.subarray(1), EXPECT);
    expect(meta.chunk).toBe(-1);
    expect(meta.firstFrame).toBe(0);
  });

  it('detects one flipped payload byte', () => {
    const buf = encodeSegment(data(), META);
    const err = (() => {
      try {
        decodeSegment(flip(buf, buf.length - 5), EXPECT);
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(ChecksumMismatchError);
    expect((err as ChecksumMismatchError).part).toBe('payload');
  });

  it('detects a flipped header byte (shape, job, first frame) before trusting it', () => {
    const buf = encodeSegment(data(), META);
    const { headerBytes } = decodeSegmentHeader(buf);
    for (const at of [12, 60, headerBytes - 80]) {
      expect(() => decodeSegment(flip(buf, at), EXPECT)).toThrow(ChecksumMismatchError);
    }
  });

  it('detects truncation anywhere, and trailing bytes', () => {
    const buf = encodeSegment(data(), META);
    for (const len of [0, 5, 11, 40, 100, buf.length - 1]) {
      expect(() => decodeSegment(buf.subarray(0, len), EXPECT)).toThrow(SegmentTruncatedError);
    }
    expect(() => decodeSegment(Buffer.concat([buf, Buffer.of(0)]), EXPECT)).toThrow(SegmentMalformedError);
  });

  it('rejects foreign bytes and newer versions', () => {
    const buf = encodeSegment(data(), META);
    expect(() => decodeSegment(Buffer.from('{"not":"a segment"}'), EXPECT)).toThrow(BadMagicError);
    const v3 = Buffer.from(buf);
    v3.writeUInt16LE(3, 8);
    expect(() => decodeSegment(v3, EXPECT)).toThrow(UnsupportedVersionError);
  });

  it('rejects a segment of another model, job, chunk or shape', () => {
    const buf = encodeSegment(data(), META);
    expect(() => decodeSegment(buf, { ...EXPECT, modelSha: 'cd'.repeat(32) })).toThrow(ModelHashMismatchError);
    expect(() => decodeSegment(buf, { ...EXPECT, job: 'job-2' })).toThrow(JobMismatchError);
    expect(() => decodeSegment(buf, { ...EXPECT, chunk: 8 })).toThrow(SegmentMismatchError);
    expect(() => decodeSegment(buf, { ...EXPECT, frameShape: [2, 2, 1, 4, 8] })).toThrow(SegmentMismatchError);
    expect(new JobMismatchError('a', 'b')).toBeInstanceOf(SegmentMismatchError);
  });

  it('refuses to encode inconsistent input', () => {
    const x = data();
    expect(() => encodeSegment(x.subarray(1), META)).toThrow(RangeError);
    expect(() => encodeSegment(x, { ...META, shape: [3, 2, 3, 2, 4, 8] })).toThrow(RangeError);
    expect(() => encodeSegment(x, { ...META, modelSha: 'xyz' })).toThrow(RangeError);
    expect(() => encodeSegment(x, { ...META, chunk: -2 })).toThrow(RangeError);
    expect(() => encodeSegment(x, { ...META, job: '' })).toThrow(RangeError);
  });
});
