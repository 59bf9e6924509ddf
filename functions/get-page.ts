import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import middy from '@middy/core';
import { NotFoundError } from '../shared/api/errors.js';
import type { HttpEvent, HttpResult } from './lib/http.js';
import { httpErrors } from './lib/middleware.js';

/**
 * The web page (`GET /`) and the one script it loads (`GET /assets/hls.min.js`). No API key: the
 * page holds no data; the browser calls the API with the key the user pastes into it. PAGE_DIR is
 * where the Lambda package carries both files; in the repository they are `web/index.html` and
 * hls.js from node_modules.
 */
const FILES: Record<string, { type: string; locate: () => string }> = {
  '/': { type: 'text/html; charset=utf-8', locate: () => inPageDir('index.html') ?? fileURLToPath(new URL('../web/index.html', import.meta.url)) },
  '/assets/hls.min.js': {
    type: 'text/javascript; charset=utf-8',
    locate: () => inPageDir('hls.min.js') ?? createRequire(import.meta.url).resolve('hls.js/dist/hls.min.js'),
  },
};

function inPageDir(name: string): string | undefined {
  return process.env.PAGE_DIR ? path.join(process.env.PAGE_DIR, name) : undefined;
}

const cache = new Map<string, string>();

export function makeGetPageHandler() {
  return middy<HttpEvent, HttpResult>()
    .use(httpErrors())
    .handler(async (event) => {
      // Two routes lead here: `/` and `/assets/{name}` (by resource, so a stage or base path does not matter).
      const name = event.pathParameters?.name;
      const route = name === undefined ? '/' : `/assets/${name}`;
      const file = FILES[route];
      if (!file) throw new NotFoundError(`no page ${JSON.stringify(route.slice(0, 80))}`, 'path');
      let body = cache.get(route);
      if (body === undefined) cache.set(route, (body = await readFile(file.locate(), 'utf8')));
      return { statusCode: 200, headers: { 'content-type': file.type, 'cache-control': 'public, max-age=300' }, body };
    });
}

export const handler = makeGetPageHandler();
