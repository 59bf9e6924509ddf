import zlib, { deflateSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { PngDecodeError } from '../../../shared/media/errors.js';
import { framesToPngs, inflatedSizeBound, pngToFrame } from '../../../shared/media/png.js';

const g = { channels: 3, height: 32, width: 32, range: [-1, 1] as const };

/** A PNG file from raw chunks (CRCs are not checked by the bound, and pngjs checks them itself). */
function png(ihdr: { width: number; height: number; depth?: number; colorType?: number; interlace?: number }, idat: Buffer): Buffer {
  const chunk = (type: string, data: Buffer) => {
    const head = Buffer.alloc(8);
    head.writeUInt32BE(data.length, 0);
    head.write(type, 4, 'latin1');
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(Buffer.concat([Buffer.from(type, 'latin1'), data])) >>> 0, 0);
    return Buffer.concat([head, data, crc]);
  };
  const h = Buffer.alloc(13);
  h.writeUInt32BE(ihdr.width, 0);
  h.writeUInt32BE(ihdr.height, 4);
  h[8] = ihdr.depth ?? 8;
  h[9] = ihdr.colorType ?? 2;
  h[12] = ihdr.interlace ?? 0;
  return Buffer.concat([Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]), chunk('IHDR', h), chunk('IDAT', idat), chunk('IEND', Buffer.alloc(0))]);
}

function crc32(buf: Buffer): number {
  let c = ~0;
  for (const b of buf) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0xedb88320 & -(c & 1));
  }
  return ~c;
}

describe('PNG inflate bound', () => {
  it('counts a filter byte per row, and the seven reduced images when interlaced', () => {
    expect(inflatedSizeBound(32, 32, 8, 2, false)).toBe(32 * (1 + 96));
    // Adam7 on 32x32: passes of 4x4, 4x4, 8x4, 8x8, 16x8, 16x16, 32x16 pixels.
    const passes = [[4, 4], [4, 4], [8, 4], [8, 8], [16, 8], [16, 16], [32, 16]];
    expect(inflatedSizeBound(32, 32, 8, 2, true)).toBe(passes.reduce((s, [w, h]) => s + h * (1 + 3 * w), 0));
    expect(inflatedSizeBound(1, 1, 8, 2, true)).toBe(4); // only the first pass holds a pixel
    expect(inflatedSizeBound(32, 32, 1, 0, false)).toBe(32 * (1 + 4)); // 1-bit grey packs 8 pixels a byte
  });

  it('still reads honest PNGs, interlaced ones included', () => {
    const frame = new Float32Array(3 * 32 * 32).map((_, i) => ((i * 37) % 255) / 127.5 - 1);
    const [encoded] = framesToPngs(frame, g);
    expect(pngToFrame(encoded, g)).toHaveLength(3 * 32 * 32);
    const raw = Buffer.alloc(inflatedSizeBound(32, 32, 8, 2, true), 7);
    let at = 0;
    for (const [w, h] of [[4, 4], [4, 4], [8, 4], [8, 8], [16, 8], [16, 16], [32, 16]]) for (let y = 0; y < h; y++) { raw[at] = 0; at += 1 + 3 * w; }
    expect(pngToFrame(png({ width: 32, height: 32, interlace: 1 }, deflateSync(raw)), g)).toHaveLength(3 * 32 * 32);
  });

  it('refuses an interlaced 32x32 PNG whose image data inflates far past what its header allows', () => {
    // 64 MiB of zeros in ~64 KB of zlib: pngjs would inflate all of it for an interlaced image.
    const bomb = png({ width: 32, height: 32, interlace: 1 }, deflateSync(Buffer.alloc(64 * 2 ** 20)));
    expect(bomb.length).toBeLessThan(2 ** 20);
    // pngjs calls zlib.inflateSync through the module object: watch what it would inflate.
    const inflated: number[] = [];
    const original = zlib.inflateSync;
    zlib.inflateSync = ((buf: zlib.InputType, opts?: zlib.ZlibOptions) => {
      const out = original(buf, opts);
      inflated.push(out.length);
      return out;
    }) as typeof zlib.inflateSync;
    try {
      expect(() => pngToFrame(bomb, g)).toThrow(PngDecodeError);
    } finally {
      zlib.inflateSync = original;
    }
    expect(Math.max(0, ...inflated)).toBeLessThanOrEqual(inflatedSizeBound(32, 32, 8, 2, true));
  });

  it('refuses a non-interlaced PNG with more image data than its rows hold', () => {
    const extra = png({ width: 32, height: 32 }, deflateSync(Buffer.alloc(inflatedSizeBound(32, 32, 8, 2, false) + 1)));
    expect(() => pngToFrame(extra, g)).toThrow(PngDecodeError);
  });
});
