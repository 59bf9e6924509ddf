import { inflateSync } from 'node:zlib';
import { PNG } from 'pngjs';
import { FrameSizeError, PngDecodeError } from './errors.js';
import { frameCount, frameToBytes, type FrameGeometry } from './raster.js';

/** One PNG per frame of `frames` [F, C, H, W]: 8-bit RGB (or grey for one channel), no alpha. */
export function framesToPngs(frames: Float32Array, g: FrameGeometry): Buffer[] {
  const n = frameCount(frames, g);
  const pngs: Buffer[] = [];
  for (let f = 0; f < n; f++) {
    const png = new PNG({ width: g.width, height: g.height });
    png.data = Buffer.from(frameToBytes(frames, g, f, 4).buffer);
    pngs.push(PNG.sync.write(png, { colorType: g.channels === 1 ? 0 : 2 }));
  }
  return pngs;
}

/**
 * Decodes one PNG into a frame [C, H, W] in the model's range. The image must be exactly H x W;
 * alpha is ignored, and a colour image read as one channel uses BT.601 luma.
 */
export function pngToFrame(png: Uint8Array, g: FrameGeometry): Float32Array {
  // The size is checked from the header (IHDR, the first chunk, which is what pngjs decodes by)
  // before decoding: pngjs allocates the whole image the header declares, so a small file that
  // claims 16000 x 16000 would cost gigabytes.
  const bytes = Buffer.from(png.buffer, png.byteOffset, png.byteLength);
  if (bytes.length < 24 || bytes.toString('latin1', 12, 16) !== 'IHDR') throw new PngDecodeError();
  const [width, height] = [bytes.readUInt32BE(16), bytes.readUInt32BE(20)];
  if (width !== g.width || height !== g.height) throw new FrameSizeError(`${g.width}x${g.height}`, `${width}x${height}`);
  assertBoundedInflate(bytes);
  let img: PNG;
  try {
    img = PNG.sync.read(bytes);
  } catch (cause) {
    throw new PngDecodeError({ cause });
  }
  const [lo, hi] = g.range;
  const plane = g.width * g.height;
  const out = new Float32Array(g.channels * plane);
  const scale = (hi - lo) / 255;
  const d = img.data; // always RGBA 8-bit after pngjs's conversion (16-bit is scaled down)
  for (let i = 0; i < plane; i++) {
    const r = d[4 * i];
    const gr = d[4 * i + 1];
    const b = d[4 * i + 2];
    if (g.channels === 1) {
      out[i] = Math.round(0.299 * r + 0.587 * gr + 0.114 * b) * scale + lo;
    } else {
      out[i] = r * scale + lo;
      out[plane + i] = gr * scale + lo;
      out[2 * plane + i] = b * scale + lo;
    }
  }
  return out;
}

/** Decodes several PNGs into one [F, C, H, W] array (e.g. a job's starting frames). */
export function pngsToFrames(pngs: readonly Uint8Array[], g: FrameGeometry): Float32Array {
  const per = g.channels * g.height * g.width;
  const out = new Float32Array(pngs.length * per);
  pngs.forEach((p, i) => out.set(pngToFrame(p, g), i * per));
  return out;
}

/** Bits per pixel of each PNG colour type, per bit of depth (grey, -, RGB, palette, grey+alpha, -, RGBA). */
const SAMPLES: Record<number, number> = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 };
/** Adam7: [x start, y start, x step, y step] of each of the seven passes. */
const ADAM7 = [[0, 0, 8, 8], [4, 0, 8, 8], [0, 4, 4, 8], [2, 0, 4, 4], [0, 2, 2, 4], [1, 0, 2, 2], [0, 1, 1, 2]] as const;

/**
 * The most bytes the image data of a `width` x `height` PNG can inflate to: a filter byte plus the
 * packed samples of each row, over the seven reduced images when interlaced.
 */
export function inflatedSizeBound(width: number, height: number, bitDepth: number, colorType: number, interlaced: boolean): number {
  const bitsPerPixel = (SAMPLES[colorType] ?? 4) * bitDepth;
  const rowBytes = (w: number) => (w === 0 ? 0 : 1 + Math.ceil((w * bitsPerPixel) / 8));
  if (!interlaced) return height * rowBytes(width);
  let total = 0;
  for (const [x0, y0, dx, dy] of ADAM7) {
    const w = Math.ceil(Math.max(0, width - x0) / dx);
    const h = Math.ceil(Math.max(0, height - y0) / dy);
    if (w > 0) total += h * rowBytes(w);
  }
  return total;
}

/**
 * Inflates the IDAT stream with its output capped at what the header allows, before pngjs sees the
 * file: pngjs inflates an interlaced image without a bound, so 2 MB of zlib data declaring 32x32
 * could otherwise take gigabytes and seconds of a blocked event loop. More data than the header
 * allows is refused as unreadable.
 */
function assertBoundedInflate(bytes: Buffer): void {
  if (bytes.length < 33) throw new PngDecodeError();
  const bitDepth = bytes[24];
  const colorType = bytes[25];
  const interlaced = bytes[28] === 1;
  const bound = inflatedSizeBound(bytes.readUInt32BE(16), bytes.readUInt32BE(20), bitDepth, colorType, interlaced);
  const idat: Buffer[] = [];
  for (let at = 8; at + 8 <= bytes.length;) {
    const length = bytes.readUInt32BE(at);
    const type = bytes.toString('latin1', at + 4, at + 8);
    if (at + 12 + length > bytes.length) break; // pngjs reports the truncation
    if (type === 'IDAT') idat.push(bytes.subarray(at + 8, at + 8 + length));
    if (type === 'IEND') break;
    at += 12 + length;
  }
  try {
    // maxOutputLength stops inflation as soon as the output passes the bound.
    inflateSync(Buffer.concat(idat), { maxOutputLength: Math.max(1, bound) });
  } catch (cause) {
    throw new PngDecodeError({ cause });
  }
}
