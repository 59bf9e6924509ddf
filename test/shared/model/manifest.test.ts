import { createHash } from 'node:crypto';
import { existsSync, promises as fs, readdirSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { ManifestInvalidError, ModelFileMissingError, OnnxHashMismatchError } from '../../../shared/model/errors.js';
import {
  batchRows,
  frameFloats,
  framesFirstCache,
  kvFrameBytes,
  kvFrameFloats,
  kvShape,
  loadManifest,
  nullLabel,
  parseManifest,
} from '../../../shared/model/manifest.js';
import { loadManifestV2, manifestFormat } from '../../../shared/model/manifest-v2.js';
import { cosineAlphasCumprod } from '../sampler/helpers.js';

const ONNX = Buffer.from('not really onnx, but hashed like it');

/** The contract's example manifest (balls32-v1), hash matching ONNX above. */
function manifest(over: Record<string, unknown> = {}) {
  return {
    name: 'balls32-v1',
    format: 1,
    onnx: 'step.onnx',
    onnx_sha256: createHash('sha256').update(ONNX).digest('hex'),
    frame: { channels: 3, height: 32, width: 32, range: [-1, 1] },
    chunk_frames: 4,
    p_max: 12,
    l_train: 16,
    depth: 6,
    heads: 6,
    head_dim: 32,
    width: 192,
    tokens_per_frame: 64,
    kv_dtype: 'float16',
    kv_layout: ['frames', 'depth', 'kv', 'batch', 'tokens', 'width'],
    cache_layout: ['depth', 'kv', 'batch', 'tokens', 'heads', 'frames', 'head_dim'],
    schedule: { type: 'cosine', train_timesteps: 1000, alphas_cumprod: cosineAlphasCumprod() },
    prediction: 'v',
    default_steps: 25,
    labels: ['1 ball', '2 balls', '3 balls'],
    null_label: 3,
    guidance: { supported: true, default: 2.0 },
    io: {
      inputs: { x: 'x', t: 't', label: 'label', pos: 'pos', cache: cacheInputs(6) },
      outputs: { prediction: 'out', kv: 'kv' },
    },
    ...over,
  };
}

const cacheInputs = (depth: number) => Array.from({ length: depth }, (_, i) => [`cache_${i}_k`, `cache_${i}_v`]).flat();

const dirs: string[] = [];
afterAll(() => Promise.all(dirs.map((d) => fs.rm(d, { recursive: true, force: true }))));
async function artifact(m: unknown, onnx: Buffer | null = ONNX): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'manifest-'));
  dirs.push(dir);
  await fs.writeFile(path.join(dir, 'manifest.json'), typeof m === 'string' ? m : JSON.stringify(m));
  if (onnx) await fs.writeFile(path.join(dir, 'step.onnx'), onnx);
  return dir;
}

async function invalidIssues(m: unknown): Promise<string> {
  const err = await loadManifest(await artifact(m)).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(ManifestInvalidError);
  return (err as ManifestInvalidError).issues.join('\n');
}

describe('loadManifest', () => {
  it('loads the contract example and checks the ONNX hash', async () => {
    const dir = await artifact(manifest());
    const { manifest: m, onnxPath } = await loadManifest(dir);
    expect(onnxPath).toBe(path.join(dir, 'step.onnx'));
    expect(m.prediction).toBe('v');
    expect(m.schedule.alphas_cumprod).toHaveLength(1000);
  });

  it('derives sizes from the manifest', async () => {
    const { manifest: m } = await loadManifest(await artifact(manifest()));
    expect(batchRows(true)).toBe(2);
    expect(frameFloats(m)).toBe(3 * 32 * 32);
    expect(kvFrameFloats(m, 2)).toBe(6 * 2 * 2 * 64 * 192);
    expect(kvFrameBytes(m, 2)).toBe(6 * 2 * 2 * 64 * 192 * 2);
    expect(kvShape(m, 12, 2)).toEqual([12, 6, 2, 2, 64, 192]);
    expect(nullLabel(m)).toBe(3);
  });

  it('rejects an ONNX file that is not the one the manifest names', async () => {
    const err = await loadManifest(await artifact(manifest(), Buffer.from('other bytes'))).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OnnxHashMismatchError);
    expect((err as OnnxHashMismatchError).expected).toBe(manifest().onnx_sha256);
  });

  it('reports a missing ONNX file or manifest', async () => {
    await expect(loadManifest(await artifact(manifest(), null))).rejects.toBeInstanceOf(ModelFileMissingError);
    await expect(loadManifest(path.join(os.tmpdir(), 'no-such-model-dir'))).rejects.toBeInstanceOf(ManifestInvalidError);
    await expect(loadManifest(await artifact('{ not json'))).rejects.toBeInstanceOf(ManifestInvalidError);
  });

  it('names the broken fields', async () => {
    const { depth: _, ...noDepth } = manifest();
    expect(await invalidIssues(noDepth)).toMatch(/depth/);
    expect(await invalidIssues(manifest({ width: 100 }))).toMatch(/heads \* head_dim/);
    expect(await invalidIssues(manifest({ l_train: 15 }))).toMatch(/l_train/);
    expect(await invalidIssues(manifest({ prediction: 'score' }))).toMatch(/prediction/);
    expect(await invalidIssues(manifest({ onnx: '../step.onnx' }))).toMatch(/onnx/);
    expect(await invalidIssues(manifest({ kv_layout: ['depth', 'frames', 'kv', 'batch', 'tokens', 'width'] }))).toMatch(/kv_layout/);
    expect(await invalidIssues(manifest({ null_label: 1 }))).toMatch(/null_label/);
    const io = { inputs: { x: 'x', t: 't', label: 'label', pos: 'pos', cache: cacheInputs(5) }, outputs: { prediction: 'out', kv: 'kv' } };
    expect(await invalidIssues(manifest({ io }))).toMatch(/2 \* depth/);
    const short = { type: 'cosine', train_timesteps: 1000, alphas_cumprod: [0.5, 0.4] };
    expect(await invalidIssues(manifest({ schedule: short }))).toMatch(/alphas_cumprod length/);
    const rising = { type: 'cosine', train_timesteps: 2, alphas_cumprod: [0.5, 0.6] };
    expect(await invalidIssues(manifest({ schedule: rising, default_steps: 2 }))).toMatch(/non-increasing/);
    expect(await invalidIssues(manifest({ context_t: 1000 }))).toMatch(/context_t/);
    expect(await invalidIssues(manifest({ context_t: -1 }))).toMatch(/context_t/);
  });

  it('serves clean conditioning frames (context_t 0) unless the manifest names a context noise', () => {
    expect(parseManifest(manifest()).context_t).toBe(0);
    expect(parseManifest(manifest({ context_t: 120 })).context_t).toBe(120);
  });

  it('serves chunks up to the trained length, never longer', async () => {
    expect(parseManifest(manifest({ chunk_frames: 3, trained_chunk_frames: 4 })).chunk_frames).toBe(3);
    expect(parseManifest(manifest({ chunk_frames: 4, trained_chunk_frames: 4 })).chunk_frames).toBe(4);
    expect(await invalidIssues(manifest({ chunk_frames: 4, trained_chunk_frames: 3 }))).toMatch(/trained_chunk_frames \(3\)/);
  });

  it('takes the window per layer and K/V (2 * depth inputs) or frames first (one input), nothing in between', async () => {
    const framesFirst = { cache_layout: ['frames', 'depth', 'kv', 'batch', 'tokens', 'width'] };
    const io = (cache: string[]) => ({ io: { inputs: { x: 'x', t: 't', label: 'label', pos: 'pos', cache }, outputs: { prediction: 'out', kv: 'kv' } } });
    expect(framesFirstCache(parseManifest(manifest()))).toBe(false);
    expect(framesFirstCache(parseManifest(manifest({ ...framesFirst, ...io(['cache']) })))).toBe(true);
    expect(await invalidIssues(manifest(framesFirst))).toMatch(/must name one input/);
    expect(await invalidIssues(manifest(io(['cache'])))).toMatch(/2 \* depth inputs/);
    expect(await invalidIssues(manifest({ cache_layout: ['frames', 'depth', 'kv', 'batch', 'tokens', 'heads', 'head_dim'] }))).toMatch(/cache_layout/);
  });

  it('accepts unconditional models without guidance', () => {
    const m = parseManifest(manifest({ labels: [], null_label: undefined, guidance: { supported: false, default: 1 } }));
    expect(nullLabel(m)).toBeUndefined();
  });
});

// The shipped artifacts, once model/ exports them, must satisfy the same contract.
const artifactsDir = fileURLToPath(new URL('../../../model/artifacts/', import.meta.url));
const shipped = existsSync(artifactsDir)
  ? readdirSync(artifactsDir).filter((d) => existsSync(path.join(artifactsDir, d, 'manifest.json')))
  : [];
describe.skipIf(shipped.length === 0)('shipped model artifacts', () => {
  it.each(shipped)('%s loads and matches its ONNX hash', async (name) => {
    const dir = path.join(artifactsDir, name);
    const { manifest: m } = (await manifestFormat(dir)) === 2 ? await loadManifestV2(dir) : await loadManifest(dir);
    expect(m.name).toBe(name);
  });
});
