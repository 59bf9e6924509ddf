/** Base of every error raised while turning frames into images or video; decide with `instanceof`. */
export class MediaError extends Error {
  override name = 'MediaError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** The bytes are not a PNG pngjs can read (user-supplied starting frames land here). */
export class PngDecodeError extends MediaError {
  override name = 'PngDecodeError';
  constructor(options?: { cause?: unknown }) {
    super('not a readable PNG', options);
  }
}

/** An image or frame buffer whose size is not the model's frame size. */
export class FrameSizeError extends MediaError {
  override name = 'FrameSizeError';
  constructor(
    readonly expected: string,
    readonly actual: string,
  ) {
    super(`frame size mismatch: expected ${expected}, got ${actual}`);
  }
}

/** ffmpeg could not be started or exited non-zero; `stderr` keeps its last lines for the log. */
export class FfmpegError extends MediaError {
  override name = 'FfmpegError';
  constructor(
    readonly exitCode: number | null,
    readonly stderr: string,
    options?: { cause?: unknown },
  ) {
    super(`ffmpeg failed (exit ${exitCode}): ${stderr.trim().split('\n').slice(-3).join(' | ')}`, options);
  }
}
