/**
 * Live playback through the embedded stack with the shipped model: the playlist shows segments
 * while the job is still processing, ends with ENDLIST, and its segments decode to the job's frames.
 */
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { expect, test } from 'vitest';
import { embeddedStackForFile } from './helpers.js';
import { resolveFfmpegPath } from '../../shared/media/mp4.js';
import { pngToFrame } from '../../shared/media/png.js';
import { frameToBytes } from '../../shared/media/raster.js';

const run = promisify(execFile);
const fixture = embeddedStackForFile('stream');

const auth = () => ({ authorization: `Bearer ${fixture.current.apiKey}` });
async function api(url: string, init: RequestInit = {}): Promise<Response> {
  return fetch(url, { ...init, headers: { ...auth(), ...(init.headers ?? {}) } });
}
const segmentsOf = (playlist: string) => playlist.split('\n').filter((l) => l && !l.startsWith('#'));

test('a client polling the stream sees segments while the job runs, ENDLIST after, and the segments are the frames', async () => {
  const created = await api(`${fixture.current.url}/v1/videos`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ frames: 16, label: '2 balls', seed: 5 }),
  });
  expect(created.status).toBe(202);
  const job = (await created.json()) as { id: string; urls: { stream: string } };
  expect(job.urls.stream).toBe(`${fixture.current.url}/v1/videos/${job.id}/stream.m3u8`);

  // Poll as a player would: note the most segments seen while the job said `processing`.
  let seenWhileProcessing = 0;
  let status = 'starting';
  let playlist = '';
  for (let i = 0; i < 2400 && !['succeeded', 'failed', 'canceled'].includes(status); i++) {
    const res = await api(job.urls.stream);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/vnd.apple.mpegurl');
    playlist = await res.text();
    status = ((await (await api(`${fixture.current.url}/v1/videos/${job.id}`)).json()) as { status: string }).status;
    if (status === 'processing') {
      expect(playlist).not.toContain('#EXT-X-ENDLIST');
      seenWhileProcessing = Math.max(seenWhileProcessing, segmentsOf(playlist).length);
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  expect(status).toBe('succeeded');
  expect(seenWhileProcessing).toBeGreaterThanOrEqual(1);

  playlist = await (await api(job.urls.stream)).text();
  expect(playlist).toMatch(/#EXT-X-PLAYLIST-TYPE:EVENT/);
  expect(playlist.trimEnd().endsWith('#EXT-X-ENDLIST')).toBe(true);
  const durations = [...playlist.matchAll(/#EXTINF:([\d.]+),/g)].map((m) => Number(m[1]));
  const body = (await (await api(`${fixture.current.url}/v1/videos/${job.id}`)).json()) as {
    progress: { chunks_total: number };
    output: { frames: { chunk: number; index: number; url: string }[] };
  };
  expect(durations.length).toBe(body.progress.chunks_total);
  expect(durations.reduce((a, b) => a + b, 0)).toBeCloseTo(16 / 8, 6);

  // The segments, fetched by their links and played in order, are the job's 16 frames.
  const ts = Buffer.concat(await Promise.all(segmentsOf(playlist).map(async (u) => Buffer.from(await (await api(u)).arrayBuffer()))));
  const file = path.join(fixture.dir, 'all.ts');
  await writeFile(file, ts);
  const { stdout } = await run(await resolveFfmpegPath(), ['-v', 'error', '-i', file, '-vsync', '0', '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-'], {
    encoding: 'buffer',
    maxBuffer: 1 << 26,
  });
  const g = fixture.current.model.manifest.frame;
  const size = g.width * 8 * g.height * 8 * 3;
  expect(stdout.length).toBe(16 * size);
  const frames = [...body.output.frames].sort((a, b) => a.chunk - b.chunk || a.index - b.index);
  expect(frames.length).toBe(16);
  const sources = await Promise.all(frames.map(async (f) => pngToFrame(Buffer.from(await (await api(f.url)).arrayBuffer()), g)));
  for (let f = 0; f < 16; f++) {
    const want = frameToBytes(sources[f], g, 0, 3, 8);
    const got = stdout.subarray(f * size, (f + 1) * size);
    let sum = 0;
    for (let i = 0; i < size; i++) sum += Math.abs(want[i] - got[i]);
    expect(sum / size, `frame ${f}`).toBeLessThan(4); // H.264 at crf 18 of the stored PNG frame
  }
}, 180_000);
