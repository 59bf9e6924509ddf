// What a job means for a model (jobPlan and its helpers), limit by limit: chunk lengths, starting
// frames, labels and guidance, continuations.
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ChunkFailure } from '../../gpu-worker/errors.js';
import { firstFrameOf, framesOfChunk, geometry, jobPlan } from '../../gpu-worker/job-plan.js';
import { parseManifest, type Manifest } from '../../shared/model/manifest.js';
import type { Job } from '../../shared/schemas/job.js';
import { MODEL_DIR } from './fixtures.js';

// The shipped model: chunks of 3 (trained on 4), P_max 12, L_train 16, labels 0-2, null label 3.
const BASE = parseManifest(JSON.parse(readFileSync(path.join(MODEL_DIR, 'manifest.json'), 'utf8')));
const manifest = (over: Partial<Manifest> = {}): Manifest => ({ ...BASE, ...over });

function job(request: Partial<Job['request']> = {}, extra: Partial<Job> = {}): Job {
  const now = new Date().toISOString();
  return {
    id: 'j1', tenant: 't1', status: 'starting',
    request: { frames: 10, seed: 1, guidance: 2, steps: 4, init_frames: { count: 0, keys: [] }, webhook_events_filter: [], ...request },
    model: { name: BASE.name, sha256: BASE.onnx_sha256, chunk_frames: 3 },
    progress: { chunks_done: 0, chunks_total: 4, frames_done: 0, frames_total: 10 },
    created_at: now, updated_at: now, metrics: { chunk_seconds: [] }, outputs: {}, cancel_requested: false,
    ...extra,
  };
}

function failure(fn: () => unknown): ChunkFailure {
  try {
    fn();
  } catch (err) {
    if (err instanceof ChunkFailure) return err;
    throw err;
  }
  throw new Error('no failure');
}

describe('jobPlan: chunk length', () => {
  it('cuts the job in the chunk length it was accepted with, up to the trained length', () => {
    expect(jobPlan(job({}, { model: { name: 'm', sha256: BASE.onnx_sha256, chunk_frames: 4 } }), manifest()).chunkFrames).toBe(4);
    expect(jobPlan(job({}, { model: { name: 'm', sha256: BASE.onnx_sha256, chunk_frames: 2 } }), manifest()).chunkFrames).toBe(2);
  });

  it('falls back to the trained length, then to the served one, for a job that recorded none', () => {
    const old = job({}, { model: { name: 'm', sha256: BASE.onnx_sha256 } });
    expect(jobPlan(old, manifest()).chunkFrames).toBe(4);
    expect(jobPlan(old, manifest({ trained_chunk_frames: undefined })).chunkFrames).toBe(3);
  });

  it('refuses a chunk longer than the trained one, naming both', () => {
    const f = failure(() => jobPlan(job({}, { model: { name: 'm', sha256: BASE.onnx_sha256, chunk_frames: 5 } }), manifest()));
    expect(f.code).toBe('model_mismatch');
    expect(f.message).toBe('job was accepted in chunks of 5 frames; this model serves at most 4');
  });

  it('refuses a chunk longer than the trained one even where it would fit after a full window', () => {
    const f = failure(() => jobPlan(job({}, { model: { name: 'm', sha256: BASE.onnx_sha256, chunk_frames: 5 } }), manifest({ l_train: 100 })));
    expect(f.code).toBe('model_mismatch');
  });

  it('refuses a chunk that does not fit after a full window (P_max + chunk > L_train), and takes one that fits exactly', () => {
    const ok = job({}, { model: { name: 'm', sha256: BASE.onnx_sha256, chunk_frames: 4 } });
    expect(jobPlan(ok, manifest({ l_train: 16 })).chunkFrames).toBe(4); // 12 + 4 = 16
    expect(failure(() => jobPlan(ok, manifest({ l_train: 15 }))).code).toBe('model_mismatch');
  });
});

describe('jobPlan: starting frames', () => {
  const keys = (n: number) => Array.from({ length: n }, (_, i) => `k${i}`);

  it('takes up to P_max starting frames and starts chunk 0 after them', () => {
    const plan = jobPlan(job({ init_frames: { count: 12, keys: keys(12) } }), manifest());
    expect(plan).toMatchObject({ initFrames: 12, startFrame: 12, chunkOffset: 0 });
  });

  it('refuses more starting frames than P_max', () => {
    const f = failure(() => jobPlan(job({ init_frames: { count: 13, keys: keys(13) } }), manifest()));
    expect(f.code).toBe('bad_request');
    expect(f.message).toBe("13 starting frames exceed the model's window of 12");
  });

  it('starts a continuation where its parent left off, its noise keyed after the parent\'s chunks', () => {
    const parent = { id: 'p', frames: 9, start_frame: 11, chunk_offset: 3 };
    expect(jobPlan(job({}, { parent }), manifest())).toMatchObject({ startFrame: 11, chunkOffset: 3 });
  });
});

describe('jobPlan: labels and guidance', () => {
  it('guides with [label, null label] when the model supports it and guidance is not 1', () => {
    expect(jobPlan(job({ label: 2, guidance: 2 }), manifest())).toMatchObject({ guided: true, rows: 2, labels: [2, 3] });
    expect(jobPlan(job({ label: '2 balls', guidance: 0.5 }), manifest())).toMatchObject({ guided: true, rows: 2, labels: [1, 3] });
  });

  it('runs one row at guidance 1, with the label', () => {
    expect(jobPlan(job({ label: 2, guidance: 1 }), manifest())).toMatchObject({ guided: false, rows: 1, labels: [2] });
  });

  it('runs one row on the null label without a label', () => {
    expect(jobPlan(job({ guidance: 2 }), manifest())).toMatchObject({ guided: false, rows: 1, labels: [3] });
  });

  it('runs one row on label 0 for a model with no null label and no label asked', () => {
    const m = manifest({ guidance: { supported: false, default: 1 } });
    expect(jobPlan(job({ guidance: 2 }), m)).toMatchObject({ guided: false, rows: 1, labels: [0] });
    expect(jobPlan(job({ label: 1, guidance: 2 }), m)).toMatchObject({ guided: false, rows: 1, labels: [1] });
  });

  it('refuses a label the model does not have, by name or index', () => {
    for (const label of ['4 balls', 3, -1]) {
      const f = failure(() => jobPlan(job({ label }), manifest()));
      expect(f.code).toBe('bad_request');
      expect(f.message).toBe(`unknown label ${JSON.stringify(label)}`);
    }
    expect(jobPlan(job({ label: 0, guidance: 1 }), manifest()).labels).toEqual([0]);
  });
});

describe('jobPlan: totals, and where each chunk lies', () => {
  it('counts the chunks of a video that does not end on a chunk boundary', () => {
    const plan = jobPlan(job({ frames: 10 }), manifest());
    expect(plan).toMatchObject({ chunkFrames: 3, framesTotal: 10, chunksTotal: 4 });
    expect([0, 1, 2, 3].map((k) => framesOfChunk(plan, k))).toEqual([3, 3, 3, 1]);
    expect(jobPlan(job({ frames: 9 }), manifest()).chunksTotal).toBe(3);
  });

  it('places chunk k after the starting frames', () => {
    expect(firstFrameOf({ startFrame: 5, chunkFrames: 3 }, 0)).toBe(5);
    expect(firstFrameOf({ startFrame: 5, chunkFrames: 3 }, 4)).toBe(17);
  });

  it('gives the frame geometry of the model', () => {
    expect(geometry(manifest())).toEqual({ channels: 3, height: 32, width: 32, range: [-1, 1] });
  });
});
