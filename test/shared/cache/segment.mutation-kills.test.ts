// The segment codec's argument checks and header bounds, edge by edge: each limit is tried on both
// sides, and each error names what was wrong (the tests StrykerJS found missing).
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { SegmentMalformedError, SegmentMismatchError, SegmentTruncatedError } from '../../../shared/cache/errors.js';
import {
  checkSegmentIdentity,
  verifySegmentFrame,
  decodeSegment,
  decodeSegmentHeader,
  encodeSegment,
  encodeSegmentParts,
  type KvShape,
  type SegmentMeta,
} from '../../../shared/cache/segment.js';

const SHA = 'cd'.repeat(32);
const SHAPE: KvShape = [2, 1, 2, 1, 2, 3]; // F, depth, kv, B, N, width
const COUNT = SHAPE.reduce((a, b) => a * b, 1);
const META: SegmentMeta = { modelSha: SHA, job: 'job-1', chunk: 3, firstFrame: 9, shape: SHAPE };
const values = (n: number) => new Float32Array(n).map((_, i) => i * 0.25 - 1);

/** What encodeSegment throws for `meta` (and data of `n` floats), or undefined. */
function encodeError(meta: Partial<SegmentMeta>, n = COUNT): Error | undefined {
  try {
    encodeSegment(values(n), { ...META, ...meta });
    return undefined;
  } catch (err) {
    return err as Error;
  }
}

describe('encodeSegment: the shape check', () => {
  const shapeError = /segment shape must be \[F, depth, 2, B, N, width\] of positive u32, got \[/;

  it.each([
    ['five dimensions', [2, 1, 2, 1, 2] as unknown as KvShape],
    ['seven dimensions', [2, 1, 2, 1, 2, 3, 1] as unknown as KvShape],
    ['k/v axis of 3', [2, 1, 3, 1, 2, 3] as KvShape],
    ['k/v axis of 1', [2, 1, 1, 1, 2, 3] as KvShape],
  ])('refuses %s, naming the shape', (_, shape) => {
    const err = encodeError({ shape }, shape.reduce((a, b) => a * b, 1));
    expect(err).toBeInstanceOf(RangeError);
    expect(err!.message).toMatch(shapeError);
    expect(err!.message).toContain(`[${shape}]`);
  });

  it('refuses a zero dimension even when the data matches (0 floats)', () => {
    expect(encodeError({ shape: [0, 1, 2, 1, 2, 3] }, 0)?.message).toMatch(shapeError);
    expect(encodeError({ shape: [2, 1, 2, 1, 0, 3] }, 0)?.message).toMatch(shapeError);
  });

  it('refuses a fractional or negative dimension (one bad among good ones)', () => {
    expect(encodeError({ shape: [2, 1, 2, 1, 1.5, 4] }, 24)?.message).toMatch(shapeError);
    expect(encodeError({ shape: [2, 1, 2, 1, -2, -3] }, 24)?.message).toMatch(shapeError);
  });

  it('accepts a dimension of exactly 2^32 - 1 as far as the shape goes, and refuses 2^32', () => {
    // The largest u32 passes the shape check and fails only on the data length.
    expect(encodeError({ shape: [0xffffffff, 1, 2, 1, 1, 1] })?.message).toBe(`segment data has ${COUNT} floats, shape needs ${2 * 0xffffffff}`);
    expect(encodeError({ shape: [0x100000000, 1, 2, 1, 1, 1] })?.message).toMatch(shapeError);
  });

  it('names both counts when the data does not fill the shape', () => {
    expect(encodeError({}, COUNT - 1)?.message).toBe(`segment data has ${COUNT - 1} floats, shape needs ${COUNT}`);
  });
});

describe('encodeSegment: the identity fields', () => {
  it('takes the model hash only as exactly 64 lower-case hex digits', () => {
    for (const modelSha of [`x${SHA}`, `${SHA}x`, `${SHA.slice(1)}`, SHA.toUpperCase()]) {
      expect(encodeError({ modelSha })?.message).toBe('modelSha must be 64 lower-case hex digits');
    }
    expect(encodeError({ modelSha: SHA })).toBeUndefined();
  });

  it('takes a job id of 1 to 1024 utf8 bytes', () => {
    expect(encodeError({ job: 'j'.repeat(1024) })).toBeUndefined();
    expect(encodeError({ job: 'j'.repeat(1025) })?.message).toBe('job id must be 1-1024 utf8 bytes');
    expect(encodeError({ job: 'ü'.repeat(513) })?.message).toBe('job id must be 1-1024 utf8 bytes'); // 1026 bytes
    expect(encodeError({ job: '' })?.message).toBe('job id must be 1-1024 utf8 bytes');
  });

  it('takes a chunk from -1 (the prefix) to 2^31 - 1', () => {
    expect(encodeError({ chunk: 0x7fffffff })).toBeUndefined();
    expect(encodeError({ chunk: -1 })).toBeUndefined();
    expect(encodeError({ chunk: 0x80000000 })?.message).toBe(`chunk must be an int32 >= -1, got ${0x80000000}`);
    expect(encodeError({ chunk: -2 })?.message).toBe('chunk must be an int32 >= -1, got -2');
  });

  it('takes a first frame from 0 to 2^32 - 1', () => {
    expect(encodeError({ firstFrame: 0 })).toBeUndefined();
    expect(encodeError({ firstFrame: 0xffffffff })).toBeUndefined();
    for (const firstFrame of [-1, 2.5, 0x100000000]) {
      expect(encodeError({ firstFrame })?.message).toBe(`firstFrame must be a u32, got ${firstFrame}`);
    }
  });

  it('round-trips the extreme identity values', () => {
    const meta = { ...META, job: 'j'.repeat(1024), chunk: 0x7fffffff, firstFrame: 0xffffffff };
    const decoded = decodeSegment(encodeSegment(values(COUNT), meta), { modelSha: SHA, job: meta.job });
    expect(decoded.meta).toMatchObject({ chunk: 0x7fffffff, firstFrame: 0xffffffff, job: meta.job });
  });
});

describe('decodeSegmentHeader: bounds', () => {
  const seg = encodeSegment(values(COUNT), META);
  const headerBytes = decodeSegmentHeader(seg).headerBytes;

  /** The SegmentTruncatedError for the first `n` bytes. */
  function truncated(n: number): SegmentTruncatedError {
    try {
      decodeSegmentHeader(seg.subarray(0, n));
    } catch (err) {
      if (err instanceof SegmentTruncatedError) return err;
      throw err;
    }
    throw new Error(`${n} bytes decoded`);
  }

  it('reads a header given exactly its own bytes (a ranged read)', () => {
    expect(decodeSegmentHeader(seg.subarray(0, headerBytes))).toMatchObject({ headerBytes, chunk: 3, job: 'job-1' });
  });

  it('asks for the bytes up to the job length once the dimension count is known', () => {
    // 12 fixed bytes, 6 dimensions, the model hash, the job length.
    const fixed = 12 + 4 * 6 + 32 + 2;
    for (const n of [13, fixed - 1]) expect(truncated(n).message).toBe(`cache segment truncated: needs ${fixed} bytes, has ${n}`);
  });

  it('asks for the whole header once the job length is known', () => {
    const fixed = 12 + 4 * 6 + 32 + 2;
    for (const n of [fixed, fixed + 5, headerBytes - 1]) {
      expect(truncated(n).message).toBe(`cache segment truncated: needs ${headerBytes} bytes, has ${n}`);
    }
    expect(headerBytes).toBe(fixed + 'job-1'.length + 4 + 4 + 8 + 32 * SHAPE[0] + 32);
  });
});

/** A version-2 header written field by field, with a valid header hash: shapes the encoder refuses. */
function rawHeader(fields: { dtype?: number; shape: number[]; payloadBytes: bigint; frames?: number; version?: number }): Buffer {
  const job = Buffer.from('job-1');
  const parts: Buffer[] = [Buffer.from('CA2VDMKV', 'ascii')];
  const u16 = (v: number) => { const b = Buffer.alloc(2); b.writeUInt16LE(v); return b; };
  const u32 = (v: number) => { const b = Buffer.alloc(4); b.writeUInt32LE(v); return b; };
  parts.push(u16(fields.version ?? 2), Buffer.from([fields.dtype ?? 1, fields.shape.length]), ...fields.shape.map(u32));
  parts.push(Buffer.from(SHA, 'hex'), u16(job.length), job);
  const tail = Buffer.alloc(16);
  tail.writeInt32LE(0, 0);
  tail.writeUInt32LE(0, 4);
  tail.writeBigUInt64LE(fields.payloadBytes, 8);
  parts.push(tail, Buffer.alloc(32 * (fields.frames ?? fields.shape[0] ?? 0)));
  const body = Buffer.concat(parts);
  return Buffer.concat([body, createHash('sha256').update(body).digest()]);
}

describe('decodeSegmentHeader: a well-hashed header that describes no valid segment', () => {
  function malformed(buf: Buffer): SegmentMalformedError {
    try {
      decodeSegmentHeader(buf);
    } catch (err) {
      if (err instanceof SegmentMalformedError) return err;
      throw err;
    }
    throw new Error('decoded');
  }

  it('reads a valid raw header (the builder below is right)', () => {
    expect(decodeSegmentHeader(rawHeader({ shape: [2, 1, 2, 1, 2, 3], payloadBytes: 48n }))).toMatchObject({ dtype: 'float16', payloadBytes: 48, frameBytes: 24 });
    expect(decodeSegmentHeader(rawHeader({ dtype: 2, shape: [2, 1, 2, 1, 2, 3], payloadBytes: 96n }))).toMatchObject({ dtype: 'float32', payloadBytes: 96 });
  });

  it('refuses an unknown dtype code', () => {
    expect(malformed(rawHeader({ dtype: 3, shape: [2, 1, 2, 1, 2, 3], payloadBytes: 48n })).reason).toBe('unknown dtype code 3');
  });

  it.each([
    ['five dimensions', [2, 1, 2, 1, 6], 48n],
    ['a k/v axis of 4', [2, 1, 4, 1, 2, 3], 96n],
    ['a zero dimension', [2, 1, 2, 1, 0, 3], 0n],
    ['a zero in the last dimension only', [2, 1, 2, 1, 2, 0], 0n],
  ])('refuses %s', (_, shape, payloadBytes) => {
    expect(malformed(rawHeader({ shape, payloadBytes })).reason).toBe(`shape [${shape}] is not [F, depth, 2, B, N, width]`);
  });

  it('refuses a header of no dimensions as malformed (it has no frame hashes, so its own hash holds)', () => {
    expect(malformed(rawHeader({ shape: [], payloadBytes: 0n })).reason).toBe('shape [] is not [F, depth, 2, B, N, width]');
  });

  it('refuses a payload length that does not match the shape', () => {
    expect(malformed(rawHeader({ shape: [2, 1, 2, 1, 2, 3], payloadBytes: 50n })).reason).toBe('payload length 50 does not match shape [2,1,2,1,2,3]');
  });
});

describe('decodeSegment and identity: what the errors say', () => {
  const seg = encodeSegment(values(COUNT), META);

  it('counts the bytes after the payload', () => {
    const err = (() => {
      try {
        decodeSegment(Buffer.concat([seg, Buffer.alloc(5)]), { modelSha: SHA, job: 'job-1' });
      } catch (e) {
        return e as SegmentMalformedError;
      }
    })();
    expect(err).toBeInstanceOf(SegmentMalformedError);
    expect(err!.reason).toBe('5 bytes after the payload');
  });

  it('names both frame shapes on a shape mismatch', () => {
    const meta = decodeSegmentHeader(seg);
    let err: SegmentMismatchError | undefined;
    try {
      checkSegmentIdentity(meta, { modelSha: SHA, job: 'job-1', frameShape: [1, 2, 1, 2, 4] });
    } catch (e) {
      err = e as SegmentMismatchError;
    }
    expect(err).toBeInstanceOf(SegmentMismatchError);
    expect(err!.message).toBe('cache segment shape mismatch: expected [1,2,1,2,4], found [1,2,1,2,3]');
  });

  it('encodeSegmentParts applies the same checks', async () => {
    await expect(encodeSegmentParts(values(COUNT), { ...META, shape: [2, 1, 3, 1, 2, 3] as KvShape })).rejects.toThrow(/segment shape must be/);
    await expect(encodeSegmentParts(values(COUNT), { ...META, firstFrame: -1 })).rejects.toThrow('firstFrame must be a u32, got -1');
  });
});

describe('version 1 segments (one payload hash)', () => {
  it('reads a version-1 header, which has no frame hashes to verify a frame against', async () => {
    const meta = decodeSegmentHeader(rawHeader({ version: 1, shape: [2, 1, 2, 1, 2, 3], payloadBytes: 48n, frames: 1 }));
    expect(meta.version).toBe(1);
    expect(meta.frameShas).toBeUndefined();
    expect(meta.payloadSha).toHaveLength(32);
    await expect(verifySegmentFrame(meta, 0, new Uint8Array(24))).rejects.toThrow(new RangeError('verifySegmentFrame: a version-1 segment has no frame hashes'));
  });
});
