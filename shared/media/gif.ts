import { createRequire } from 'node:module';
import { frameCount, frameToBytes, type FrameGeometry } from './raster.js';

export interface GifOptions {
  /** Integer nearest-neighbour upscale, so 32x32 frames are viewable. Default 4. */
  scale?: number;
  /** Frames per second (GIF delays are whole centiseconds, so it is rounded). Default 8. */
  fps?: number;
}

// gifenc is CommonJS with an ESM "module" build whose default export differs; require() loads the
// same CommonJS file under Node and under vitest.
const gifenc = createRequire(import.meta.url)('gifenc') as typeof import('gifenc');

// Quantizing every frame of a long video buys little: the palette is sampled from at most this many.
const PALETTE_SAMPLE_FRAMES = 64;

/** Animated, looping GIF of `frames` [F, C, H, W]: one 256-colour palette for all frames, so colours do not flicker. */
export function encodeGif(frames: Float32Array, g: FrameGeometry, opts: GifOptions = {}): Buffer {
  const { scale = 4, fps = 8 } = opts;
  if (!Number.isInteger(scale) || scale < 1) throw new RangeError(`scale must be a positive integer, got ${scale}`);
  if (!(fps > 0)) throw new RangeError(`fps must be positive, got ${fps}`);
  const n = frameCount(frames, g);
  if (n === 0) throw new RangeError('encodeGif needs at least one frame');
  const small = Array.from({ length: n }, (_, f) => frameToBytes(frames, g, f, 4));

  const stride = Math.max(1, Math.ceil(n / PALETTE_SAMPLE_FRAMES));
  const sampled = small.filter((_, f) => f % stride === 0);
  const all = new Uint8Array(sampled.reduce((a, s) => a + s.length, 0));
  sampled.reduce((o, s) => (all.set(s, o), o + s.length), 0);
  const palette = gifenc.quantize(all, 256);

  const { width: W, height: H } = g;
  const OW = W * scale;
  const enc = gifenc.GIFEncoder();
  const delay = Math.round(1000 / fps);
  small.forEach((rgba, f) => {
    // Upscale the palette indices, not the pixels: scale^2 less work for applyPalette.
    const idx = gifenc.applyPalette(rgba, palette);
    const big = new Uint8Array(OW * H * scale);
    for (let y = 0; y < H * scale; y++) {
      const row = ((y / scale) | 0) * W;
      for (let x = 0; x < OW; x++) big[y * OW + x] = idx[row + ((x / scale) | 0)];
    }
    enc.writeFrame(big, OW, H * scale, { palette: f === 0 ? palette : undefined, delay, repeat: 0 });
  });
  enc.finish();
  return Buffer.from(enc.bytes());
}
