import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** The model shipped in the repository; MODEL_DIR points elsewhere to drop in another. */
export const DEFAULT_MODEL_DIR = path.join(ROOT, 'model', 'artifacts', 'balls32-v1');
