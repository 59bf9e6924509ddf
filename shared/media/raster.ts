import { FrameSizeError } from './errors.js';

/** Pixel layout of frames: Float32Array [F, C, H, W] with values in `range` (the manifest's frame). */
export interface FrameGeometry {
  channels: number;
  height: number;
  width: number;
  range: readonly [number, number];
}

/** Number of whole frames in `frames`; anything else is a FrameSizeError. */
export function frameCount(frames: Float32Array, g: FrameGeometry): number {
  const per = g.channels * g.height * g.width;
  if (per === 0 || frames.length % per !== 0) {
    throw new FrameSizeError(`a multiple of ${g.channels}x${g.height}x${g.width}`, `${frames.length} values`);
  }
  return frames.length / per;
}

/** Maps a model value to a byte: range -> 0..255, rounded, clamped (NaN -> 0). */
export function toByte(v: number, lo: number, hi: number): number {
  const b = Math.round(((v - lo) / (hi - lo)) * 255);
  return b > 0 ? (b < 255 ? b : 255) : 0;
}

/**
 * Frame `index` as interleaved 8-bit pixels (`components` 3 = RGB, 4 = RGBA with opaque alpha),
 * upscaled `scale` times by nearest neighbour; one-channel frames become grey.
 */
export function frameToBytes(
  frames: Float32Array,
  g: FrameGeometry,
  index: number,
  components: 3 | 4,
  scale = 1,
): Uint8Array {
  if (!Number.isInteger(scale) || scale < 1) throw new RangeError(`scale must be a positive integer, got ${scale}`);
  const { channels: C, height: H, width: W } = g;
  const [lo, hi] = g.range;
  const plane = H * W;
  const base = index * C * plane;
  const OW = W * scale;
  const out = new Uint8Array(H * scale * OW * components);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const p = base + y * W + x;
      const r = toByte(frames[p], lo, hi);
      const gr = C === 1 ? r : toByte(frames[p + plane], lo, hi);
      const b = C === 1 ? r : toByte(frames[p + 2 * plane], lo, hi);
      for (let dy = 0; dy < scale; dy++) {
        let o = ((y * scale + dy) * OW + x * scale) * components;
        for (let dx = 0; dx < scale; dx++, o += components) {
          out[o] = r;
          out[o + 1] = gr;
          out[o + 2] = b;
          if (components === 4) out[o + 3] = 255;
        }
      }
    }
  }
  return out;
}
