import { describe, expect, it } from 'vitest';
import { buildStack } from './helpers.js';

/** Asset hashes change with every source edit; the snapshot is about the template's shape. */
function normalize(template: unknown): unknown {
  return JSON.parse(JSON.stringify(template).replace(/[0-9a-f]{64}/g, '<asset-hash>'));
}

describe('template snapshot', () => {
  it('matches the stored template (asset hashes normalized)', () => {
    expect(normalize(buildStack().template.toJSON())).toMatchSnapshot();
  });
});
