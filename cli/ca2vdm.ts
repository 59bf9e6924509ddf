import { readFile } from 'node:fs/promises';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { ApiClientError, Ca2vdmClient, type CreateVideoRequest } from '../shared/api/client.js';

const USAGE = `usage: ca2vdm generate --frames N --out video.mp4 [options]
       ca2vdm extend ID --frames N --out video.mp4 [--seed S --webhook URL --no-wait]
                    (continues a succeeded video; saves the whole video, old frames and new)
       ca2vdm get ID | list | cancel ID | secret   [--api URL --key KEY]

options:
  --frames N          frames to generate (required for generate)
  --out FILE          where to save the MP4 (default video.mp4)
  --label L           label name or index from the model manifest
  --seed S            noise seed (same seed, same video)
  --steps T           sampling steps per chunk
  --guidance G        classifier-free guidance scale
  --init a.png,b.png  starting frames (PNG, the model's frame size)
  --webhook URL       webhook for start/output/completed events
  --idempotency-key K repeat-safe submission
  --api URL           API base URL (default $CA2VDM_API_URL or http://127.0.0.1:8080)
  --key KEY           API key (default $CA2VDM_API_KEY or the file .data/api-key)
  --no-wait           submit and print the job, do not wait`;

/** Runs the CLI; returns the exit code. `out` / `err` are injectable for tests. */
export async function main(
  argv: string[],
  io: { out: (s: string) => void; err: (s: string) => void; env?: NodeJS.ProcessEnv; cwd?: string } = {
    out: (s) => process.stdout.write(s),
    err: (s) => process.stderr.write(s),
  },
): Promise<number> {
  const env = io.env ?? process.env;
  let args;
  try {
    args = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        frames: { type: 'string' },
        out: { type: 'string', default: 'video.mp4' },
        label: { type: 'string' },
        seed: { type: 'string' },
        steps: { type: 'string' },
        guidance: { type: 'string' },
        init: { type: 'string' },
        webhook: { type: 'string' },
        'idempotency-key': { type: 'string' },
        api: { type: 'string' },
        key: { type: 'string' },
        'no-wait': { type: 'boolean', default: false },
        'poll-ms': { type: 'string', default: '1000' },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
  } catch (e) {
    io.err(`${(e as Error).message}\n${USAGE}\n`);
    return 2;
  }
  const { values: v, positionals } = args;
  const [command, id] = positionals;
  if (v.help || !command) {
    io.out(USAGE + '\n');
    return command || v.help ? 0 : 2;
  }
  const cwd = io.cwd ?? process.cwd();
  const apiKey = v.key ?? env.CA2VDM_API_KEY ?? (await readFile(path.join(cwd, '.data/api-key'), 'utf8').catch(() => '')).trim();
  if (!apiKey) {
    io.err('no API key: pass --key, set CA2VDM_API_KEY, or start the embedded stack (it writes .data/api-key)\n');
    return 2;
  }
  const client = new Ca2vdmClient({ baseUrl: v.api ?? env.CA2VDM_API_URL ?? 'http://127.0.0.1:8080', apiKey });
  const print = (x: unknown) => io.out(JSON.stringify(x, null, 2) + '\n');
  try {
    switch (command) {
      case 'get':
        print(await client.getVideo(need(id, 'ID')));
        return 0;
      case 'list':
        print(await client.listVideos());
        return 0;
      case 'cancel':
        print(await client.cancelVideo(need(id, 'ID')));
        return 0;
      case 'secret':
        print(await client.webhookSecret());
        return 0;
      case 'generate':
      case 'extend':
        break;
      default:
        io.err(`unknown command ${command}\n${USAGE}\n`);
        return 2;
    }
    if (!v.frames) {
      io.err('--frames is required\n');
      return 2;
    }
    if (command === 'extend') {
      for (const flag of ['label', 'steps', 'guidance', 'init'] as const) {
        if (v[flag] !== undefined) throw new UsageError(`--${flag}: an extension keeps its video's label, guidance and steps`);
      }
    }
    const req: CreateVideoRequest = { frames: num(v.frames, 'frames') };
    if (v.label !== undefined) req.label = /^\d+$/.test(v.label) ? Number(v.label) : v.label;
    if (v.seed !== undefined) req.seed = num(v.seed, 'seed');
    if (v.steps !== undefined) req.steps = num(v.steps, 'steps');
    if (v.guidance !== undefined) req.guidance = num(v.guidance, 'guidance');
    if (v.webhook !== undefined) req.webhook = v.webhook;
    if (v.init) {
      // Each file goes up as an upload (no base64 in the request body, no body-size limit to meet).
      req.init_frames = await Promise.all(
        v.init.split(',').map(async (f) => client.uploadFrame(await readFile(path.resolve(cwd, f.trim())))),
      );
    }
    const submit = { idempotencyKey: v['idempotency-key'] };
    const job = command === 'extend'
      ? await client.extendVideo(need(id, 'ID'), { frames: req.frames, seed: req.seed, webhook: req.webhook }, submit)
      : await client.createVideo(req, submit);
    io.err(`submitted ${job.id} (${job.progress.chunks_total} chunks)\n`);
    if (v['no-wait']) {
      print(job);
      return 0;
    }
    const started = Date.now();
    const final = await client.waitFor(job.id, {
      intervalMs: num(v['poll-ms'], 'poll-ms'),
      onProgress: (j) => {
        const p = j.progress;
        io.err(`${j.status} ${p.chunks_done}/${p.chunks_total} chunks, ${p.frames_done}/${p.frames_total} frames (${((Date.now() - started) / 1000).toFixed(1)} s)\n`);
      },
    });
    if (final.status !== 'succeeded') {
      io.err(`video ${final.id} ${final.status}${final.error ? `: ${final.error.code}: ${final.error.message}` : ''}\n`);
      return 1;
    }
    // An extension saves the whole video (the frames it continues, then its own).
    const video = final.output.full ?? final.output.video;
    if (!video) {
      io.err(`video ${final.id} succeeded but has no video output\n`);
      return 1;
    }
    const out = path.resolve(cwd, v.out);
    await client.download(video, out);
    io.err(`saved ${out}\n`);
    print({ id: final.id, status: final.status, out, metrics: final.metrics });
    return 0;
  } catch (e) {
    if (e instanceof ApiClientError || e instanceof UsageError) {
      io.err(`error: ${e.message}\n`);
      return e instanceof UsageError ? 2 : 1;
    }
    throw e;
  }
}

class UsageError extends Error {
  override name = 'UsageError';
}

function need(x: string | undefined, what: string): string {
  if (!x) throw new UsageError(`missing ${what}`);
  return x;
}

function num(x: string, what: string): number {
  const n = Number(x);
  if (x.trim() === '' || !Number.isFinite(n)) throw new UsageError(`--${what} must be a number, got ${JSON.stringify(x)}`);
  return n;
}
