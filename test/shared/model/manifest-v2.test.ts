import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as ort from 'onnxruntime-node';
import { afterAll, describe, expect, it } from 'vitest';
import { ManifestInvalidError, OnnxHashMismatchError } from '../../../shared/model/errors.js';
import { loadManifest } from '../../../shared/model/manifest.js';
import { kvFrameBytesV2, loadManifestV2, manifestFormat, ManifestV2Schema } from '../../../shared/model/manifest-v2.js';

// The committed tiny random-weight official model (model/official/convert.py --random --preset test).
const TINY = fileURLToPath(new URL('../../../model/artifacts/official-tiny-random/', import.meta.url));

const dirs: string[] = [];
afterAll(() => Promise.all(dirs.map((d) => fs.rm(d, { recursive: true, force: true }))));
async function copyOfTiny(edit: (m: Record<string, unknown>) => void = () => {}): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'manifest-v2-'));
  dirs.push(dir);
  for (const f of await fs.readdir(TINY)) await fs.copyFile(path.join(TINY, f), path.join(dir, f));
  const m = JSON.parse(await fs.readFile(path.join(dir, 'manifest.json'), 'utf8')) as Record<string, unknown>;
  edit(m);
  await fs.writeFile(path.join(dir, 'manifest.json'), JSON.stringify(m));
  return dir;
}

describe('format 2 manifest (latent space, two caches)', () => {
  it('loads the committed tiny model and checks all three graphs', async () => {
    const { manifest: m, files } = await loadManifestV2(TINY);
    expect(await manifestFormat(TINY)).toBe(2);
    expect(m.latent).toMatchObject({ channels: 4, height: m.frame.height / 8, width: m.frame.width / 8 });
    expect(m.prefix_cache?.frames).toBe(3);
    expect(path.basename(files.decoder)).toBe('decoder.onnx');
    expect(kvFrameBytesV2(m, 1)).toBe(m.depth * 2 * m.tokens_per_frame * m.width * 2);
  });

  it('is refused by the format-1 loader, so a format-1 worker never serves it by accident', async () => {
    await expect(loadManifest(TINY)).rejects.toBeInstanceOf(ManifestInvalidError);
  });

  it('describes the graphs: input order, output shapes, the VAE interface', async () => {
    const { manifest: m, files } = await loadManifestV2(TINY);
    const step = await ort.InferenceSession.create(files.step);
    const io = m.io.inputs;
    expect(step.inputNames).toEqual([io.x, io.t, io.clean, io.pos, ...io.cache, ...(io.prefix ?? [])]);
    const [B, F, P, Tp] = [1, m.chunk_frames, 3, m.prefix_cache?.frames ?? 0];
    const { channels: C, height: h, width: w } = m.latent;
    const kvIn = (frames: number) => new ort.Tensor('float32', new Float32Array(B * m.tokens_per_frame * m.width * frames), [B, m.tokens_per_frame, m.heads, frames, m.head_dim]);
    const feeds: Record<string, ort.Tensor> = {
      [io.x]: new ort.Tensor('float32', new Float32Array(B * F * C * h * w).fill(0.5), [B, F, C, h, w]),
      [io.t]: new ort.Tensor('float32', new Float32Array(B * F).fill(500), [B, F]),
      [io.clean]: new ort.Tensor('float32', new Float32Array(B * F), [B, F]),
      [io.pos]: new ort.Tensor('int64', BigInt64Array.of(3n), [1]),
    };
    for (const n of io.cache) feeds[n] = kvIn(P);
    for (const n of io.prefix ?? []) feeds[n] = kvIn(Tp);
    const out = await step.run(feeds);
    expect(out[m.io.outputs.prediction].dims).toEqual([B, F, 2 * C, h, w]);   // eps and the variance value
    expect(out[m.io.outputs.kv].dims).toEqual([F, m.depth, 2, B, m.tokens_per_frame, m.width]);
    expect(out[m.io.outputs.kv].type).toBe(m.kv_dtype);
    expect(out[m.io.outputs.kv_prefix!].dims).toEqual([F, m.depth, 2, B, m.tokens_per_frame, m.width]);
    const encoder = await ort.InferenceSession.create(files.encoder);
    const decoder = await ort.InferenceSession.create(files.decoder);
    const lat = await encoder.run({ frames: new ort.Tensor('float32', new Float32Array(2 * 3 * m.frame.height * m.frame.width), [2, 3, m.frame.height, m.frame.width]) });
    expect(lat.latents.dims).toEqual([2, C, h, w]);
    const rgb = await decoder.run({ latents: lat.latents });
    expect(rgb.frames.dims).toEqual([2, 3, m.frame.height, m.frame.width]);
    await Promise.all([step.release(), encoder.release(), decoder.release()]);
  });

  it('refuses a manifest whose caches and inputs disagree, naming the field', async () => {
    const m = JSON.parse(await fs.readFile(path.join(TINY, 'manifest.json'), 'utf8')) as Record<string, any>;
    const noPrefixInputs = { ...m, io: { ...m.io, inputs: { ...m.io.inputs, prefix: undefined } } };
    expect(ManifestV2Schema.safeParse(noPrefixInputs).error?.issues[0].path).toEqual(['prefix_cache']);
    expect(ManifestV2Schema.safeParse({ ...m, positions: 'rope' }).error?.issues[0].path).toEqual(['positions']);
    expect(ManifestV2Schema.safeParse({ ...m, latent: { ...m.latent, height: 4 } }).error?.issues[0].path).toEqual(['latent']);
    expect(ManifestV2Schema.safeParse(m).success).toBe(true);
  });

  it('checks the VAE graphs against their hashes too', async () => {
    const dir = await copyOfTiny();
    await fs.appendFile(path.join(dir, 'decoder.onnx'), Buffer.from([0]));
    await expect(loadManifestV2(dir)).rejects.toBeInstanceOf(OnnxHashMismatchError);
    const renamed = await copyOfTiny((m) => { m.format = 1; });
    await expect(loadManifestV2(renamed)).rejects.toBeInstanceOf(ManifestInvalidError);
  });
});
