import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ManifestInvalidError } from '../../../shared/model/errors.js';
import { isLatentManifest, parseServedManifest } from '../../../shared/model/served.js';

const read = (name: string) => JSON.parse(readFileSync(fileURLToPath(new URL(`../../../model/artifacts/${name}/manifest.json`, import.meta.url)), 'utf8'));

describe('a manifest the API serves (either format, as the Lambdas read it from MODEL_MANIFEST_PATH)', () => {
  it('parses each format by its own schema', () => {
    const toy = parseServedManifest(read('balls32-v1'));
    const official = parseServedManifest(read('official-tiny-random'));
    expect([toy.format, isLatentManifest(toy)]).toEqual([1, false]);
    expect([official.format, isLatentManifest(official)]).toEqual([2, true]);
  });

  it('names what is wrong with a format-2 manifest', () => {
    const bad = { ...read('official-tiny-random'), p_max: 0 };
    expect(() => parseServedManifest(bad, 'sky/manifest.json')).toThrow(ManifestInvalidError);
    expect(() => parseServedManifest(bad, 'sky/manifest.json')).toThrow(/p_max/);
    expect(() => parseServedManifest({ ...read('official-tiny-random'), format: 3 })).toThrow(/format/);
  });
});
