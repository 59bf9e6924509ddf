/**
 * Errors of the K/V cache codec and assembler. A segment that fails any check is never used: the
 * caller rebuilds it from the stored frames (t = 0 pass) or fails the job with the reason.
 */
export class CacheError extends Error {
  override name = 'CacheError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** The bytes do not start with the segment magic: not a cache segment at all. */
export class BadMagicError extends CacheError {
  override name = 'BadMagicError';
  constructor() {
    super('not a cache segment (bad magic)');
  }
}

/** Written by a newer (or unknown) codec version. */
export class UnsupportedVersionError extends CacheError {
  override name = 'UnsupportedVersionError';
  constructor(readonly version: number) {
    super(`unsupported cache segment version ${version}`);
  }
}

/** Fewer bytes than the header says there are (a cut upload or read). */
export class SegmentTruncatedError extends CacheError {
  override name = 'SegmentTruncatedError';
  constructor(
    readonly needed: number,
    readonly actual: number,
  ) {
    super(`cache segment truncated: needs ${needed} bytes, has ${actual}`);
  }
}

/** The header or the payload does not hash to the stored SHA-256: corrupted bytes. */
export class ChecksumMismatchError extends CacheError {
  override name = 'ChecksumMismatchError';
  constructor(readonly part: 'header' | 'payload') {
    super(`cache segment ${part} checksum mismatch`);
  }
}

/** A header field holds an impossible value (dtype code, shape vs payload length, trailing bytes). */
export class SegmentMalformedError extends CacheError {
  override name = 'SegmentMalformedError';
  constructor(readonly reason: string) {
    super(`malformed cache segment: ${reason}`);
  }
}

/** A well-formed segment that belongs elsewhere; `field` says which identity differs. */
export class SegmentMismatchError extends CacheError {
  override name = 'SegmentMismatchError';
  constructor(
    readonly field: 'model' | 'job' | 'chunk' | 'shape',
    readonly expected: string,
    readonly actual: string,
  ) {
    super(`cache segment ${field} mismatch: expected ${expected}, found ${actual}`);
  }
}

/** Made by another model file: its K/V mean nothing to this one. */
export class ModelHashMismatchError extends SegmentMismatchError {
  override name = 'ModelHashMismatchError';
  constructor(expected: string, actual: string) {
    super('model', expected, actual);
  }
}

/** Belongs to another job (a mis-keyed or copied object). */
export class JobMismatchError extends SegmentMismatchError {
  override name = 'JobMismatchError';
  constructor(expected: string, actual: string) {
    super('job', expected, actual);
  }
}

/**
 * The newest segments do not form one run of consecutive frames: a segment is missing (gap), two
 * overlap, or the newest does not end where the next chunk starts. `foundEnd` is the end frame
 * (exclusive) of the segment found instead, undefined when there is none.
 */
export class CacheGapError extends CacheError {
  override name = 'CacheGapError';
  constructor(
    readonly expectedEnd: number,
    readonly foundEnd: number | undefined,
    readonly chunk?: number,
  ) {
    super(
      `cache frames not contiguous: expected a segment ending at frame ${expectedEnd}, ` +
        (foundEnd === undefined ? 'found none' : `found one ending at ${foundEnd} (chunk ${chunk})`),
    );
  }
}
