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
