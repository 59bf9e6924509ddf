import { readFile } from 'node:fs/promises';
import * as path from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { main } from '../../cli/ca2vdm.js';
import { startApiServer } from '../../functions/local/server.js';
import { ensureLocalApiKey } from '../../shared/auth/api-keys.js';
import { readJob, updateJob } from '../../shared/jobs/job-store.js';
import { videoKey } from '../../shared/keys.js';
import { ChunkTaskSchema } from '../../shared/schemas/chunk-task.js';
import { pngBase64, tempStack, testConfig, testManifest, type TempStack } from '../api/helpers.js';

let stack: TempStack;
let server: { url: string; close(): Promise<void> };
let key: string;
let tenant: string;
beforeAll(async () => {
  stack = await tempStack();
  server = await startApiServer({ ...stack, manifest: testManifest(), config: testConfig(), port: 0 });
  ({ key, tenant } = await ensureLocalApiKey(stack.store));
});
afterAll(async () => {
  await server?.close();
  await stack?.cleanup();
});

/** Stands in for the GPU worker: takes chunk 0 and finishes the job with a fake video. */
async function fakeWorker(): Promise<void> {
  for (;;) {
    const [msg] = await stack.chunkQueue.receive({ visibilitySec: 30, waitSec: 1 });
    if (!msg) continue;
    const task = ChunkTaskSchema.parse(JSON.parse(msg.body));
    await stack.store.put(videoKey(task.tenant, task.job), Buffer.from('MP4 bytes'));
    await updateJob(stack.store, task.tenant, task.job, (j) => ({
      ...j,
      status: 'succeeded',
      progress: { ...j.progress, chunks_done: j.progress.chunks_total, frames_done: j.progress.frames_total },
      outputs: { video: videoKey(j.tenant, j.id) },
    }));
    await stack.chunkQueue.delete(msg.receiptHandle);
    return;
  }
}

test('generate submits, reports progress and downloads the video', async () => {
  const out: string[] = [];
  const err: string[] = [];
  const worker = fakeWorker();
  const code = await main(
    ['generate', '--frames', '8', '--label', '2 balls', '--seed', '3', '--out', 'v.mp4', '--api', server.url, '--poll-ms', '50'],
    { out: (s) => out.push(s), err: (s) => err.push(s), env: { CA2VDM_API_KEY: key }, cwd: stack.dir },
  );
  await worker;
  expect(err.join('')).toMatch(/submitted vid_/);
  expect(err.join('')).toMatch(/succeeded 2\/2 chunks/);
  expect(code).toBe(0);
  expect(await readFile(path.join(stack.dir, 'v.mp4'), 'utf8')).toBe('MP4 bytes');
});

test('a bad request prints the API error naming the field and exits 1', async () => {
  const err: string[] = [];
  const code = await main(['generate', '--frames', '0', '--api', server.url], {
    out: () => {},
    err: (s) => err.push(s),
    env: { CA2VDM_API_KEY: key },
    cwd: stack.dir,
  });
  expect(code).toBe(1);
  expect(err.join('')).toMatch(/400 invalid_request \(frames\)/);
});

test('the key is read from .data/api-key when not given', async () => {
  const { mkdir, writeFile } = await import('node:fs/promises');
  await mkdir(path.join(stack.dir, '.data'), { recursive: true });
  await writeFile(path.join(stack.dir, '.data/api-key'), key + '\n');
  const out: string[] = [];
  const code = await main(['list', '--api', server.url], { out: (s) => out.push(s), err: () => {}, env: {}, cwd: stack.dir });
  expect(code).toBe(0);
  expect(JSON.parse(out.join('')).data.length).toBeGreaterThan(0);
});

test('--init sends each starting frame as an upload, and the job starts from those exact bytes', async () => {
  const { writeFile } = await import('node:fs/promises');
  const a = Buffer.from(pngBase64(32, 32, [10, 200, 10]), 'base64');
  const b = Buffer.from(pngBase64(32, 32, [10, 10, 200]), 'base64');
  await writeFile(path.join(stack.dir, 'a.png'), a);
  await writeFile(path.join(stack.dir, 'b.png'), b);
  const out: string[] = [];
  const code = await main(['generate', '--frames', '4', '--init', 'a.png, b.png', '--no-wait', '--api', server.url], {
    out: (s) => out.push(s),
    err: () => {},
    env: { CA2VDM_API_KEY: key },
    cwd: stack.dir,
  });
  expect(code).toBe(0);
  const id = JSON.parse(out.join('')).id as string;
  const job = (await readJob(stack.store, tenant, id))!.job;
  expect(job.request.init_frames.count).toBe(2);
  expect((await stack.store.get(job.request.init_frames.keys[0]))!.body.equals(a)).toBe(true);
  expect((await stack.store.get(job.request.init_frames.keys[1]))!.body.equals(b)).toBe(true);
  // They went up as uploads, not inside the request body.
  expect((await stack.store.list(`uploads/${tenant}/`)).filter((k) => k.endsWith('.png'))).toHaveLength(2);
});

test('extend continues a succeeded video: the new job names its parent; conditioning flags are refused', async () => {
  const out: string[] = [];
  const io = { out: (s: string) => out.push(s), err: () => {}, env: { CA2VDM_API_KEY: key }, cwd: stack.dir };
  expect(await main(['generate', '--frames', '8', '--label', '2 balls', '--seed', '4', '--no-wait', '--api', server.url], io)).toBe(0);
  const parent = JSON.parse(out.join('')).id as string;
  await updateJob(stack.store, tenant, parent, (j) => ({ ...j, status: 'succeeded' }));
  out.length = 0;
  expect(await main(['extend', parent, '--frames', '4', '--no-wait', '--api', server.url], io)).toBe(0);
  const child = JSON.parse(out.join(''));
  expect(child.parent).toEqual({ id: parent, frames: 8 });
  expect(child.input).toMatchObject({ frames: 4, seed: 4, label: 1 });
  const err: string[] = [];
  expect(await main(['extend', parent, '--frames', '4', '--label', '1 ball', '--api', server.url], { ...io, err: (s) => err.push(s) })).toBe(2);
  expect(err.join('')).toMatch(/--label: an extension keeps/);
});
