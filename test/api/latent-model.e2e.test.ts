/**
 * The embedded stack serving a format-2 (latent) model, the committed tiny official one: the API
 * takes its requests by its manifest (default steps, no guidance, no labels, starting images
 * required for a new video), a job with a starting image ends `succeeded` with an MP4 of the right
 * frame count and size, and an extension of it ends with the whole video.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEmbeddedStack, type EmbeddedStack } from '../../scripts/stack.js';
import { resolveFfmpegPath } from '../../shared/media/mp4.js';
import { framesToPngs } from '../../shared/media/png.js';

const run = promisify(execFile);
const TINY = fileURLToPath(new URL('../../model/artifacts/official-tiny-random/', import.meta.url));

let stack: EmbeddedStack;
let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'ca2vdm-latent-'));
  stack = await startEmbeddedStack({ dataDir: dir, port: 0, modelDir: TINY });
});
afterAll(async () => {
  await stack?.close();
  await rm(dir, { recursive: true, force: true });
});

async function api(route: string, init: RequestInit = {}): Promise<Response> {
  const url = route.startsWith('http') ? route : `${stack.url}${route}`;
  return fetch(url, { ...init, headers: { authorization: `Bearer ${stack.apiKey}`, 'content-type': 'application/json', ...(init.headers ?? {}) } });
}
const post = (body: unknown) => api('/v1/videos', { method: 'POST', body: JSON.stringify(body) });

function startImage(): string {
  const { frame } = stack.model.manifest;
  const px = frame.width * frame.height;
  const [png] = framesToPngs(Float32Array.from({ length: 3 * px }, (_, i) => Math.cos((i % px) / 23 + Math.floor(i / px)) * 0.6), frame);
  return png.toString('base64');
}

async function finished(id: string): Promise<{ status: string; input: { steps: number }; output: { video?: string; full?: string }; error?: unknown }> {
  for (let i = 0; i < 1200; i++) {
    const job = await (await api(`/v1/videos/${id}`)).json();
    if (['succeeded', 'failed', 'canceled'].includes(job.status)) return job;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`job ${id} did not finish`);
}

describe('the embedded stack with a latent model', () => {
  it('describes the served model in its OpenAPI document', async () => {
    const res = await api('/v1/openapi.json');
    expect(res.status).toBe(200);
    const text = JSON.stringify(await res.json());
    expect(text).toContain(`Serving model ${stack.model.manifest.name}: 64x64 frames, chunks of 2, unconditional. A new video starts from 1 to 5 starting images (init_frames); extend and fork continue a video's own frames.`);
  });

  it('refuses what the model cannot do, naming the field', async () => {
    const cases: [unknown, string][] = [
      [{ frames: 4, guidance: 3, init_frames: [startImage()] }, 'guidance'],
      [{ frames: 4, label: 'cats', init_frames: [startImage()] }, 'label'],
      [{ frames: 4 }, 'init_frames'],
      [{ frames: 4, init_frames: [] }, 'init_frames'],
      [{ frames: 4, init_frames: Array.from({ length: 6 }, startImage) }, 'init_frames'],
    ];
    for (const [body, field] of cases) {
      const res = await post(body);
      expect(res.status, JSON.stringify(body).slice(0, 80)).toBe(400);
      expect(JSON.stringify(await res.json())).toContain(field);
    }
  });

  it('makes a video from a starting image: succeeded, an MP4 of the asked frames at the model\'s size', async () => {
    const created = await post({ frames: 5, seed: 3, steps: 2, init_frames: [startImage()] });
    expect(created.status).toBe(202);
    const { id } = await created.json();
    const job = await finished(id);
    expect(job.status, JSON.stringify(job.error)).toBe('succeeded');
    const mp4 = path.join(dir, 'out.mp4');
    await writeFile(mp4, Buffer.from(await (await api(job.output.video!)).arrayBuffer()));
    const { stdout } = await run(await resolveFfmpegPath(), ['-v', 'error', '-i', mp4, '-vsync', '0', '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-'], { encoding: 'buffer', maxBuffer: 1 << 26 });
    const { frame } = stack.model.manifest;
    expect(stdout.length).toBe(5 * (frame.width * 8) * (frame.height * 8) * 3); // the MP4 is upscaled 8x
  }, 120_000);

  it('takes the steps from the manifest when the request names none, and extends a video from its end', async () => {
    const created = await post({ frames: 1, init_frames: [startImage()] });
    expect(created.status).toBe(202);
    const { id } = await created.json();
    const job = await finished(id);
    expect(job.status).toBe('succeeded');
    expect(job.input.steps).toBe(stack.model.manifest.default_steps);
    const extend = await api(`/v1/videos/${id}/extend`, { method: 'POST', body: JSON.stringify({ frames: 2 }) });
    expect(extend.status).toBe(202);
    const more = await finished((await extend.json()).id);
    expect(more.status, JSON.stringify(more.error)).toBe('succeeded');
    expect(more.input.steps).toBe(job.input.steps);
    // The whole video: the one frame it continues, then its own two.
    const mp4 = path.join(dir, 'full.mp4');
    await writeFile(mp4, Buffer.from(await (await api(more.output.full!)).arrayBuffer()));
    const { stdout } = await run(await resolveFfmpegPath(), ['-v', 'error', '-i', mp4, '-vsync', '0', '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-'], { encoding: 'buffer', maxBuffer: 1 << 26 });
    const { frame } = stack.model.manifest;
    expect(stdout.length).toBe(3 * (frame.width * 8) * (frame.height * 8) * 3);
  }, 120_000);
});
