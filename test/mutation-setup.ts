// Setup of the tests StrykerJS runs (vitest.mutation.config.ts). Its sandbox is a copy of the
// project without the ignored paths; if the model's artifacts were left out, every test that loads
// the model would fail in its beforeAll, which vitest reports as skipped tests, and those tests
// would silently neither cover nor kill anything. Fail the whole run instead.
import { existsSync } from 'node:fs';
import * as path from 'node:path';

const manifest = path.resolve(import.meta.dirname, '../model/artifacts/balls32-v1/manifest.json');
if (!existsSync(manifest)) throw new Error(`mutation testing needs the shipped model in its sandbox: ${manifest} is missing (stryker.config.mjs ignorePatterns)`);
