/**
 * Proves the worker image's production steps where no Docker engine runs: the files the Dockerfile
 * COPYs go into a clean folder, production dependencies only are installed there, and the
 * entrypoint runs its self-check (load the model, one denoising step, exit 0). The CPU execution
 * provider stands in for CUDA, which needs the GPU host.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DEFAULT_CONFIG } from '../../infra/config.js';
import { REPO_ROOT } from './helpers.js';

const MODEL_DIR = path.join(REPO_ROOT, 'model', 'artifacts', DEFAULT_CONFIG.modelName);
const ENTRY = path.join(REPO_ROOT, 'gpu-worker', 'main.ts');
const missing = [ENTRY, path.join(MODEL_DIR, 'manifest.json')].filter((p) => !fs.existsSync(p));
if (missing.length) console.warn(`worker-image test skipped: missing ${missing.map((p) => path.relative(REPO_ROOT, p)).join(', ')}`);

/** The COPY lines of gpu-worker/Dockerfile as [source, destination] pairs, with build args substituted. */
function dockerfileCopies(): [string, string][] {
  const text = fs.readFileSync(path.join(REPO_ROOT, 'gpu-worker', 'Dockerfile'), 'utf8');
  return [...text.matchAll(/^COPY\s+(.+)$/gm)].flatMap((m) => {
    const parts = m[1].replaceAll('${MODEL_NAME}', DEFAULT_CONFIG.modelName).trim().split(/\s+/);
    const dest = parts.pop()!;
    return parts.map((src): [string, string] => [src, dest === './' ? src : dest]);
  });
}

describe.skipIf(missing.length > 0)('worker image, production steps outside Docker', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ca2vdm-image-'));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('copies what the Dockerfile copies, installs production deps only, and the self-check exits 0', () => {
    // Same files as the image (paths relative to WORKDIR /app).
    for (const [src, dest] of dockerfileCopies()) {
      fs.cpSync(path.join(REPO_ROOT, src), path.join(dir, dest), { recursive: true });
    }
    expect(fs.existsSync(path.join(dir, 'model', 'manifest.json'))).toBe(true);

    // `npm ci --omit=dev` as in the image, offline from npm's cache (no registry here) and without
    // install scripts (the CUDA download is the image's business; the bundled CPU binaries suffice).
    const ci = spawnSync('npm', ['ci', '--omit=dev', '--ignore-scripts', '--offline', '--no-audit', '--no-fund'], {
      cwd: dir,
      encoding: 'utf8',
      timeout: 240_000,
    });
    if (ci.status !== 0) {
      // Cache incomplete: copy the production closure that npm itself computes from this checkout instead.
      console.warn(`npm ci --offline failed (${ci.stderr.slice(-300)}); copying the production dependency tree instead`);
      const paths = execFileSync('npm', ['ls', '--omit=dev', '--all', '--parseable'], { cwd: REPO_ROOT, encoding: 'utf8' })
        .split('\n')
        .filter((p) => p.includes(`${path.sep}node_modules${path.sep}`));
      for (const p of paths) fs.cpSync(p, path.join(dir, path.relative(REPO_ROOT, p)), { recursive: true });
    }
    // Dev-only tools must not be there: the image would not have them either.
    for (const dev of ['vitest', 'typescript', 'aws-cdk-lib']) expect(fs.existsSync(path.join(dir, 'node_modules', dev)), dev).toBe(false);
    expect(fs.existsSync(path.join(dir, 'node_modules', 'tsx')), 'tsx is a production dependency').toBe(true);

    // ENTRYPOINT + --self-check, with the image's environment except the CPU provider.
    const run = spawnSync('node', ['--import', 'tsx', 'gpu-worker/main.ts', '--self-check'], {
      cwd: dir,
      encoding: 'utf8',
      timeout: 120_000,
      env: { PATH: process.env.PATH, HOME: dir, NODE_ENV: 'production', STORE: 's3', MODEL_DIR: path.join(dir, 'model'), ORT_PROVIDER: 'cpu' },
    });
    expect(run.status, `stdout:\n${run.stdout}\nstderr:\n${run.stderr}`).toBe(0);
  }, 400_000);
});
