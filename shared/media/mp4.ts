import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FfmpegError } from './errors.js';
import { frameCount, frameToBytes, type FrameGeometry } from './raster.js';

export interface Mp4Options {
  /** Frames per second of the output. Default 8. */
  fps?: number;
  /** Integer nearest-neighbour upscale (done by ffmpeg). Default 8. */
  scale?: number;
  /** x264 constant rate factor; lower is better. Default 18 (visually lossless for flat scenes). */
  crf?: number;
  /** ffmpeg binary; default $FFMPEG_PATH, else the one @ffmpeg-installer/ffmpeg ships. */
  ffmpegPath?: string;
  signal?: AbortSignal;
}

const STDERR_KEEP = 8192;

/** Frames per second of every video the service makes (MP4 and HLS segments alike). */
export const VIDEO_FPS = 8;

/** The ffmpeg to run. Resolved lazily so importing this module never needs the binary (Lambda). */
export async function resolveFfmpegPath(explicit?: string): Promise<string> {
  if (explicit) return explicit;
  if (process.env.FFMPEG_PATH) return process.env.FFMPEG_PATH;
  const mod = await import('@ffmpeg-installer/ffmpeg');
  return mod.default.path;
}

/**
 * H.264 MP4 (yuv420p, +faststart for progressive playback) of `frames` [F, C, H, W]. Raw rgb24 is
 * piped to ffmpeg's stdin; it writes a temporary file because the MP4 muxer needs to seek.
 */
export async function encodeMp4(frames: Float32Array, g: FrameGeometry, opts: Mp4Options = {}): Promise<Buffer> {
  const { fps = VIDEO_FPS, crf = 18, signal } = opts;
  const n = frameCount(frames, g);
  if (n === 0) throw new RangeError('encodeMp4 needs at least one frame');
  const input = rawVideoInput(frames, g, { fps, scale: opts.scale });
  const bin = await resolveFfmpegPath(opts.ffmpegPath);

  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'mp4-'));
  const out = path.join(dir, 'video.mp4');
  try {
    // prettier-ignore
    const args = [
      ...input.args,
      '-c:v', 'libx264', '-pix_fmt', 'yuv420p', '-crf', String(crf),
      '-movflags', '+faststart', '-an', '-y', out,
    ];
    await runFfmpeg(bin, args, input.frames, signal);
    return await fs.readFile(out);
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}

/**
 * The ffmpeg arguments up to the encoder for `frames` piped as raw rgb24 (upscaled by nearest
 * neighbour; yuv420p needs even sizes, so one black column/row pads an odd one), and the frames.
 */
export function rawVideoInput(
  frames: Float32Array,
  g: FrameGeometry,
  opts: { fps: number; scale?: number },
): { args: string[]; frames: Iterable<Uint8Array> } {
  const { fps, scale = 8 } = opts;
  if (!Number.isInteger(scale) || scale < 1) throw new RangeError(`scale must be a positive integer, got ${scale}`);
  if (!(fps > 0)) throw new RangeError(`fps must be positive, got ${fps}`);
  const n = frameCount(frames, g);
  const sw = g.width * scale;
  const sh = g.height * scale;
  const vf = [`scale=${sw}:${sh}:flags=neighbor`];
  if (sw % 2 || sh % 2) vf.push(`pad=${sw + (sw % 2)}:${sh + (sh % 2)}`);
  function* rgb() {
    for (let f = 0; f < n; f++) yield frameToBytes(frames, g, f, 3);
  }
  // prettier-ignore
  const args = [
    '-hide_banner', '-loglevel', 'error',
    '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-s', `${g.width}x${g.height}`, '-framerate', String(fps),
    '-i', 'pipe:0', '-vf', vf.join(','),
  ];
  return { args, frames: rgb() };
}

/**
 * Spawns ffmpeg, writes `input` to its stdin (respecting backpressure; `input` may be a promise of
 * it), resolves on exit 0 with what it wrote to stdout (empty unless the output is `pipe:1`).
 */
export async function runFfmpeg(bin: string, args: string[], input: Iterable<Uint8Array> | Promise<Iterable<Uint8Array>>, signal?: AbortSignal): Promise<Buffer> {
  const child = spawn(bin, args, { stdio: ['pipe', 'pipe', 'pipe'], signal });
  const stdout: Buffer[] = [];
  child.stdout.on('data', (b: Buffer) => stdout.push(b));
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (s: string) => {
    stderr = (stderr + s).slice(-STDERR_KEEP);
  });
  // ffmpeg may exit early (bad args): writes then fail with EPIPE, and the exit code says why.
  child.stdin.on('error', () => {});
  // Rejects on 'error' (binary missing, aborted); the no-op catch only stops an early rejection
  // from counting as unhandled before it is awaited below.
  const closed = once(child, 'close') as Promise<[number | null, NodeJS.Signals | null]>;
  closed.catch(() => {});
  // Input still to come (ffmpeg started early, its start-up overlapping the making of the frames):
  // if it never comes, ffmpeg is ended and the reason passed on.
  let frames: Iterable<Uint8Array>;
  try {
    frames = await input;
  } catch (err) {
    child.kill();
    await closed.catch(() => {});
    throw err;
  }
  try {
    for (const chunk of frames) {
      if (child.exitCode !== null) break;
      if (!child.stdin.write(chunk)) await Promise.race([once(child.stdin, 'drain'), closed]);
    }
  } catch {
    // A failed write means ffmpeg went away; its exit status (below) says why.
  }
  child.stdin.end();
  let code: number | null;
  try {
    [code] = await closed;
  } catch (cause) {
    if (signal?.aborted) throw signal.reason;
    throw new FfmpegError(null, stderr || String(cause), { cause });
  }
  if (code !== 0) throw new FfmpegError(code, stderr);
  return Buffer.concat(stdout);
}
