/** The real app: esbuild bundles every handler and the worker image's context is staged, all offline. */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { App } from 'aws-cdk-lib';
import { afterAll, describe, expect, it } from 'vitest';
import { DEFAULT_CONFIG } from '../../infra/config.js';
import { FUNCTION_ENTRIES } from '../../infra/constructs/api.js';
import { Ca2vdmStack } from '../../infra/stack.js';
import { REPO_ROOT } from './helpers.js';

const missing = Object.values(FUNCTION_ENTRIES).filter((e) => !fs.existsSync(path.join(REPO_ROOT, e)));
if (missing.length) console.warn(`real bundling test skipped: handler files missing: ${missing.join(', ')}`);

describe.skipIf(missing.length > 0)('real synthesis with esbuild bundling', () => {
  const outdir = fs.mkdtempSync(path.join(os.tmpdir(), 'ca2vdm-cdk-'));
  afterAll(() => fs.rmSync(outdir, { recursive: true, force: true }));

  it('bundles every function with the model manifest and stages the worker context without node_modules', async () => {
    const app = new App({ outdir });
    new Ca2vdmStack(app, 'Real', { config: DEFAULT_CONFIG, repoRoot: REPO_ROOT });
    const assembly = app.synth();
    const assets = JSON.parse(fs.readFileSync(path.join(assembly.directory, 'Real.assets.json'), 'utf8')) as {
      files: Record<string, { source: { path: string; packaging: string } }>;
      dockerImages: Record<string, { source: { directory: string; dockerFile: string } }>;
    };
    const bundles = Object.values(assets.files)
      .map((f) => path.join(assembly.directory, f.source.path))
      .filter((dir) => fs.existsSync(path.join(dir, 'index.mjs')));
    expect(bundles).toHaveLength(Object.keys(FUNCTION_ENTRIES).length);
    for (const dir of bundles) {
      expect(fs.existsSync(path.join(dir, 'model', 'manifest.json')), dir).toBe(true);
      expect(fs.existsSync(path.join(dir, 'node_modules')), dir).toBe(false);
    }

    // The page function's package carries the page and hls.js, and serves both from there.
    const pages = bundles.filter((dir) => fs.existsSync(path.join(dir, 'web', 'index.html')));
    expect(pages).toHaveLength(1);
    expect(fs.existsSync(path.join(pages[0], 'web', 'hls.min.js'))).toBe(true);
    process.env.PAGE_DIR = path.join(pages[0], 'web');
    const { handler } = (await import(path.join(pages[0], 'index.mjs'))) as { handler: (e: unknown, c: unknown) => Promise<{ statusCode: number; body: string }> };
    const page = await handler({ path: '/', pathParameters: null, headers: {} }, {});
    expect(page.statusCode).toBe(200);
    expect(page.body).toContain('<title>ca2vdm');
    const script = await handler({ path: '/assets/hls.min.js', pathParameters: { name: 'hls.min.js' }, headers: {} }, {});
    expect(script.body.length).toBeGreaterThan(100_000);
    expect((await handler({ path: '/assets/x.js', pathParameters: { name: 'x.js' }, headers: {} }, {})).statusCode).toBe(404);
    delete process.env.PAGE_DIR;

    const images = Object.values(assets.dockerImages);
    expect(images).toHaveLength(1);
    expect(images[0].source.dockerFile).toBe('gpu-worker/Dockerfile');
    const context = path.join(assembly.directory, images[0].source.directory);
    expect(fs.readdirSync(context).sort()).toEqual(['gpu-worker', 'model', 'package-lock.json', 'package.json', 'shared', 'tsconfig.json']);
    expect(fs.existsSync(path.join(context, 'model', 'artifacts', DEFAULT_CONFIG.modelName, 'step.onnx'))).toBe(true);
  }, 300_000);
});
