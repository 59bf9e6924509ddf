import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { FfmpegError, FrameSizeError, PngDecodeError } from '../../../shared/media/errors.js';
import { encodeGif } from '../../../shared/media/gif.js';
import { encodeTsSegment, renderPlaylist } from '../../../shared/media/hls.js';
import { encodeMp4, resolveFfmpegPath } from '../../../shared/media/mp4.js';
import { framesToPngs, pngsToFrames, pngToFrame } from '../../../shared/media/png.js';
import { frameCount, frameToBytes, type FrameGeometry } from '../../../shared/media/raster.js';

const run = promisify(execFile);
const G: FrameGeometry = { channels: 3, height: 32, width: 32, range: [-1, 1] };

/** F frames of a red square moving right over a blue-green gradient, values in [-1, 1]. */
function movie(F: number, g: FrameGeometry = G): Float32Array {
  const { channels: C, height: H, width: W } = g;
  const out = new Float32Array(F * C * H * W);
  for (let f = 0; f < F; f++)
    for (let y = 0; y < H; y++)
      for (let x = 0; x < W; x++) {
        const inSquare = x >= 2 * f && x < 2 * f + 8 && y >= 10 && y < 18;
        const rgb = inSquare ? [1, -1, -1] : [-1, (y / H) * 2 - 1, (x / W) * 2 - 1];
        for (let c = 0; c < C; c++) out[((f * C + c) * H + y) * W + x] = rgb[c];
      }
  return out;
}

const dirs: string[] = [];
afterAll(() => Promise.all(dirs.map((d) => fs.rm(d, { recursive: true, force: true }))));
async function writeTemp(name: string, bytes: Uint8Array): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'media-test-'));
  dirs.push(dir);
  const file = path.join(dir, name);
  await fs.writeFile(file, bytes);
  return file;
}

/** Decodes a video with ffmpeg (no ffprobe needed): frame count and size from its log. */
async function probe(file: string): Promise<{ frames: number; width: number; height: number }> {
  const { stderr } = await run(await resolveFfmpegPath(), ['-hide_banner', '-i', file, '-vsync', '0', '-f', 'null', '-']);
  const counts = [...stderr.matchAll(/frame=\s*(\d+)/g)];
  const size = /Video: .*?, (\d+)x(\d+)/.exec(stderr);
  return { frames: Number(counts.at(-1)?.[1]), width: Number(size?.[1]), height: Number(size?.[2]) };
}

/** Counts image blocks by walking the GIF block structure (header, tables, extensions, images). */
function gifImages(b: Uint8Array): { width: number; height: number; images: number } {
  const width = b[6] | (b[7] << 8);
  const height = b[8] | (b[9] << 8);
  let o = 13 + (b[10] & 0x80 ? 3 << ((b[10] & 7) + 1) : 0);
  const skipSubBlocks = () => {
    while (b[o] !== 0) o += b[o] + 1;
    o++;
  };
  let images = 0;
  for (;;) {
    const tag = b[o++];
    if (tag === 0x3b) return { width, height, images };
    if (tag === 0x21) {
      o++;
      skipSubBlocks();
    } else if (tag === 0x2c) {
      const flags = b[o + 8];
      o += 9 + (flags & 0x80 ? 3 << ((flags & 7) + 1) : 0) + 1; // descriptor, local table, LZW size
      skipSubBlocks();
      images++;
    } else throw new Error(`bad GIF block 0x${tag?.toString(16)} at ${o - 1}`);
  }
}

describe('png', () => {
  it('round-trips frames to within half a grey level', () => {
    const x = new Float32Array(2 * 3 * 32 * 32).map(() => Math.random() * 2 - 1);
    const pngs = framesToPngs(x, G);
    expect(pngs).toHaveLength(2);
    expect(pngs[0].subarray(1, 4).toString()).toBe('PNG');
    const y = pngsToFrames(pngs, G);
    let worst = 0;
    for (let i = 0; i < x.length; i++) worst = Math.max(worst, Math.abs(x[i] - y[i]));
    expect(worst).toBeLessThanOrEqual(1 / 255 + 1e-6);
  });

  it('round-trips one-channel frames and clamps out-of-range values', () => {
    const g1: FrameGeometry = { ...G, channels: 1 };
    const x = new Float32Array(32 * 32).fill(0.5);
    x[0] = 7;
    x[1] = -7;
    const y = pngToFrame(framesToPngs(x, g1)[0], g1);
    expect([y[0], y[1]]).toEqual([1, -1]);
    expect(Math.abs(y[2] - 0.5)).toBeLessThan(1 / 255);
  });

  it('rejects bytes that are not PNG and images of the wrong size', () => {
    expect(() => pngToFrame(Buffer.from('hello'), G)).toThrow(PngDecodeError);
    const small = framesToPngs(new Float32Array(3 * 16 * 32), { ...G, height: 16 })[0];
    expect(() => pngToFrame(small, G)).toThrow(FrameSizeError);
    expect(() => frameCount(new Float32Array(100), G)).toThrow(FrameSizeError);
  });

  it('rejects an image that claims a huge size from its header, before decoding it', () => {
    // A real frame whose header now says 16000 x 16000: decoding would allocate about 1 GB.
    const bomb = Buffer.from(framesToPngs(new Float32Array(3 * 32 * 32), G)[0]);
    bomb.writeUInt32BE(16000, 16);
    bomb.writeUInt32BE(16000, 20);
    expect(() => pngToFrame(bomb, G)).toThrow(/16000x16000/);
  });
});

describe('gif', () => {
  it('writes a looping GIF89a with every frame, upscaled', () => {
    const gif = encodeGif(movie(6), G, { scale: 4, fps: 10 });
    expect(gif.subarray(0, 6).toString()).toBe('GIF89a');
    expect(gifImages(gif)).toEqual({ width: 128, height: 128, images: 6 });
    expect(gif.includes(Buffer.from('NETSCAPE2.0'))).toBe(true);
  });
});

describe('mp4', () => {
  it('encodes H.264 MP4 that ffmpeg decodes back to every frame at the upscaled size', async () => {
    const mp4 = await encodeMp4(movie(10), G, { fps: 8, scale: 8 });
    expect(mp4.subarray(4, 8).toString()).toBe('ftyp');
    const file = await writeTemp('v.mp4', mp4);
    expect(await probe(file)).toEqual({ frames: 10, width: 256, height: 256 });
    // Colours and orientation survive: the centre of the square in frame 3 is red.
    const { stdout } = await run(
      await resolveFfmpegPath(),
      ['-v', 'error', '-i', file, '-vf', 'select=eq(n\\,3)', '-vsync', '0', '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-'],
      { encoding: 'buffer', maxBuffer: 1 << 24 },
    );
    const px = (x: number, y: number) => [...stdout.subarray((y * 256 + x) * 3, (y * 256 + x) * 3 + 3)];
    const [r, g, b] = px((6 + 4) * 8, 14 * 8);
    expect(r).toBeGreaterThan(200);
    expect(Math.max(g, b)).toBeLessThan(50);
  });

  it('pads odd sizes to even for yuv420p', async () => {
    const g: FrameGeometry = { channels: 1, height: 3, width: 5, range: [0, 1] };
    const mp4 = await encodeMp4(new Float32Array(4 * 15).fill(0.5), g, { scale: 1 });
    expect(await probe(await writeTemp('odd.mp4', mp4))).toEqual({ frames: 4, width: 6, height: 4 });
  });

  it('raises FfmpegError when ffmpeg is missing or fails', async () => {
    await expect(encodeMp4(movie(1), G, { ffmpegPath: '/nonexistent/ffmpeg' })).rejects.toBeInstanceOf(FfmpegError);
    const err = await encodeMp4(movie(1), G, { ffmpegPath: '/bin/false' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FfmpegError);
    expect((err as FfmpegError).exitCode).toBe(1);
  });
});

describe('hls segments', () => {
  /** Decoded rgb24 frames at the encoded size, and each frame's presentation time. */
  async function decode(file: string): Promise<{ frames: Buffer[]; pts: number[] }> {
    const { stdout, stderr } = await run(
      await resolveFfmpegPath(),
      ['-hide_banner', '-copyts', '-i', file, '-vf', 'showinfo', '-vsync', '0', '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-'],
      { encoding: 'buffer', maxBuffer: 1 << 26 },
    );
    const size = 256 * 256 * 3;
    const frames = Array.from({ length: stdout.length / size }, (_, i) => stdout.subarray(i * size, (i + 1) * size));
    const pts = [...stderr.toString().matchAll(/pts_time:\s*([\d.]+)/g)].map((m) => Number(m[1]));
    return { frames, pts };
  }
  /** Mean absolute difference per byte between a decoded frame and source frame f, upscaled 8x. */
  function mad(decoded: Buffer, source: Float32Array, f: number): number {
    const want = frameToBytes(source, G, f, 3, 8);
    let sum = 0;
    for (let i = 0; i < want.length; i++) sum += Math.abs(want[i] - decoded[i]);
    return sum / want.length;
  }

  it('chunks encoded one by one play, concatenated, as the whole video: every frame, in order, on one clock', async () => {
    const video = movie(10);
    const per = 3 * 32 * 32;
    const cuts = [0, 3, 6, 9, 10]; // chunks of 3 and a last one of 1, as a job's last chunk may be
    const segments: Buffer[] = [];
    for (let c = 0; c + 1 < cuts.length; c++) {
      const seg = await encodeTsSegment(video.subarray(cuts[c] * per, cuts[c + 1] * per), G, { startFrame: cuts[c], fps: 8 });
      expect(seg[0]).toBe(0x47); // MPEG-TS sync byte
      // Each segment decodes on its own (starts on a keyframe) and starts at its place in the video.
      const alone = await decode(await writeTemp(`s${c}.ts`, seg));
      expect(alone.frames.length).toBe(cuts[c + 1] - cuts[c]);
      expect(alone.pts[0]).toBeCloseTo(cuts[c] / 8, 3);
      segments.push(seg);
    }
    const whole = await decode(await writeTemp('all.ts', Buffer.concat(segments)));
    expect(whole.frames.length).toBe(10);
    expect(whole.pts).toEqual(Array.from({ length: 10 }, (_, i) => expect.closeTo(i / 8, 3)));
    for (let f = 0; f < 10; f++) {
      const own = mad(whole.frames[f], video, f);
      expect(own).toBeLessThan(3); // near-lossless at crf 18
      if (f > 0) expect(own).toBeLessThan(mad(whole.frames[f], video, f - 1)); // and this frame, not its neighbour
    }
  });

  it('starts ffmpeg before the frames exist: the same segment once they come, the reason when they never do', async () => {
    const video = movie(3);
    const now = await encodeTsSegment(video, G, { startFrame: 6, fps: 8 });
    const later = await encodeTsSegment(new Promise<Float32Array>((r) => setTimeout(() => r(video), 50)), G, { startFrame: 6, fps: 8 });
    expect(later.equals(now)).toBe(true);
    const lost = new Error('denoising failed');
    await expect(encodeTsSegment(Promise.reject(lost), G, { startFrame: 0 })).rejects.toBe(lost);
    await expect(encodeTsSegment(Promise.resolve(new Float32Array(5)), G, { startFrame: 0 })).rejects.toBeInstanceOf(FrameSizeError);
  });

  it('lists segments in an EVENT playlist that gains ENDLIST only when the video ends', () => {
    const entries = [{ duration: 0.375, uri: 'https://x/a.ts' }, { duration: 0.125, uri: 'https://x/b.ts' }];
    const live = renderPlaylist(entries, { ended: false, targetDuration: 0.375 });
    expect(live.split('\n')).toEqual([
      '#EXTM3U', '#EXT-X-VERSION:3', '#EXT-X-PLAYLIST-TYPE:EVENT', '#EXT-X-TARGETDURATION:1', '#EXT-X-MEDIA-SEQUENCE:0',
      '#EXTINF:0.375,', 'https://x/a.ts', '#EXTINF:0.125,', 'https://x/b.ts', '',
    ]);
    expect(renderPlaylist(entries, { ended: true, targetDuration: 0.375 }).trimEnd().endsWith('#EXT-X-ENDLIST')).toBe(true);
  });
});
