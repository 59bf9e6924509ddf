/**
 * Extend and fork through the embedded stack with the shipped model: a continuation conditions on
 * its parent's stored cache, so with the parent's seed and a cut on a chunk boundary its frames are
 * byte for byte the frames one longer job makes; bad continuations are 4xx naming the field.
 */
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, test } from 'vitest';
import { createApiKey } from '../../shared/auth/api-keys.js';
import { embeddedStackForFile } from './helpers.js';
import { resolveFfmpegPath } from '../../shared/media/mp4.js';

const run = promisify(execFile);
const fixture = embeddedStackForFile('extend');

type Video = {
  id: string;
  status: string;
  parent: { id: string; frames: number } | null;
  input: { seed: number; label: string | number | null };
  output: { full: string | null; frames: { chunk: number; index: number; url: string }[] };
  error: { code: string; message: string } | null;
};

async function call(method: string, p: string, body?: unknown, key = fixture.current.apiKey): Promise<{ status: number; json: any }> {
  const res = await fetch(fixture.current.url + p, {
    method,
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, json: await res.json() };
}

async function finished(id: string): Promise<Video> {
  for (let i = 0; i < 2400; i++) {
    const { json } = await call('GET', `/v1/videos/${id}`);
    if (['succeeded', 'failed', 'canceled'].includes(json.status)) return json as Video;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${id} did not finish`);
}

/** The job's frame PNGs in order. */
async function frames(v: Video): Promise<Buffer[]> {
  const sorted = [...v.output.frames].sort((a, b) => a.chunk - b.chunk || a.index - b.index);
  const auth = { authorization: `Bearer ${fixture.current.apiKey}` };
  return Promise.all(sorted.map(async (f) => Buffer.from(await (await fetch(f.url, { headers: auth })).arrayBuffer())));
}

const create = async (body: unknown) => {
  const res = await call('POST', '/v1/videos', body);
  expect(res.status, JSON.stringify(res.json)).toBe(202);
  return finished(res.json.id);
};

describe('extend and fork', () => {
  test('an extension equals, frame for frame, the same frames of one longer job; a fork equals its frames too', async () => {
    const short = await create({ frames: 12, label: '2 balls', seed: 5 });
    expect(short.status).toBe('succeeded');
    const ext = await call('POST', `/v1/videos/${short.id}/extend`, { frames: 9 });
    expect(ext.status, JSON.stringify(ext.json)).toBe(202);
    expect(ext.json.parent).toEqual({ id: short.id, frames: 12 });
    expect(ext.json.input).toMatchObject({ seed: 5, label: short.input.label }); // the parent's conditioning
    const extended = await finished(ext.json.id);
    expect(extended.status, JSON.stringify(extended.error)).toBe('succeeded');

    const long = await create({ frames: 24, label: '2 balls', seed: 5 });
    const [shortFrames, extFrames, longFrames] = await Promise.all([frames(short), frames(extended), frames(long)]);
    expect(extFrames).toHaveLength(9);
    for (let i = 0; i < 12; i++) expect(shortFrames[i].equals(longFrames[i]), `frame ${i}`).toBe(true);
    for (let i = 0; i < 9; i++) expect(extFrames[i].equals(longFrames[12 + i]), `extension frame ${i}`).toBe(true);

    // The whole video: the parent's 12 frames, then the extension's 9.
    expect(extended.output.full).not.toBeNull();
    const mp4 = Buffer.from(await (await fetch(extended.output.full!, { headers: { authorization: `Bearer ${fixture.current.apiKey}` } })).arrayBuffer());
    const file = path.join(fixture.dir, 'full.mp4');
    await writeFile(file, mp4);
    const { stderr } = await run(await resolveFfmpegPath(), ['-hide_banner', '-i', file, '-vsync', '0', '-f', 'null', '-']);
    expect(Number([...stderr.matchAll(/frame=\s*(\d+)/g)].at(-1)?.[1])).toBe(21);

    // Fork the long job at frame 9: its 6 frames are the long job's frames 9-14.
    const fork = await call('POST', '/v1/videos', { from: { video: long.id, frame: 9 }, frames: 6 });
    expect(fork.status, JSON.stringify(fork.json)).toBe(202);
    const forked = await finished(fork.json.id);
    expect(forked.status).toBe('succeeded');
    const forkFrames = await frames(forked);
    for (let i = 0; i < 6; i++) expect(forkFrames[i].equals(longFrames[9 + i]), `fork frame ${i}`).toBe(true);

    // An extension of an extension stands on both: its window reaches back into the first video.
    const again = await call('POST', `/v1/videos/${extended.id}/extend`, { frames: 3 });
    expect(again.status).toBe(202);
    const twice = await finished(again.json.id);
    expect(twice.status).toBe('succeeded');
    const twiceFrames = await frames(twice);
    for (let i = 0; i < 3; i++) expect(twiceFrames[i].equals(longFrames[21 + i]), `second extension frame ${i}`).toBe(true);
  }, 300_000);

  test('bad continuations are 4xx naming the field, and nothing is written', async () => {
    const running = await call('POST', '/v1/videos', { frames: 60, label: '1 ball', seed: 1 });
    const done = await create({ frames: 6, label: '1 ball', seed: 2 });
    const before = (await call('GET', '/v1/videos?limit=100')).json.data.length;
    const otherKey = await createApiKey(fixture.current.adapters.store, 'someone-else');
    const cases: [string, string, unknown, number, string][] = [
      ['POST', `/v1/videos/${running.json.id}/extend`, { frames: 3 }, 409, 'id'],
      ['POST', '/v1/videos/vid_nope/extend', { frames: 3 }, 404, 'id'],
      ['POST', `/v1/videos/${done.id}/extend`, { frames: 0 }, 400, 'frames'],
      ['POST', `/v1/videos/${done.id}/extend`, { frames: 3, label: '2 balls' }, 400, 'label'],
      ['POST', '/v1/videos', { from: { video: done.id, frame: 4 }, frames: 3 }, 400, 'from.frame'],
      ['POST', '/v1/videos', { from: { video: done.id, frame: 9 }, frames: 3 }, 400, 'from.frame'],
      ['POST', '/v1/videos', { from: { video: done.id, frame: 3 }, frames: 3, guidance: 1 }, 400, 'guidance'],
      ['POST', '/v1/videos', { from: { video: 'vid_nope', frame: 3 }, frames: 3 }, 404, 'from.video'],
    ];
    for (const [method, p, body, status, field] of cases) {
      const res = await call(method, p, body);
      expect(res.status, `${p} ${JSON.stringify(body)}: ${JSON.stringify(res.json)}`).toBe(status);
      expect(res.json.error.field).toBe(field);
    }
    // Another tenant's video is not there for them.
    expect((await call('POST', `/v1/videos/${done.id}/extend`, { frames: 3 }, otherKey)).status).toBe(404);
    expect((await call('GET', '/v1/videos?limit=100')).json.data.length).toBe(before);
    await call('POST', `/v1/videos/${running.json.id}/cancel`);
  }, 300_000);
});
