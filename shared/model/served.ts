import { ManifestInvalidError } from './errors.js';
import { parseManifest, type Manifest } from './manifest.js';
import { ManifestV2Schema, type ManifestV2 } from './manifest-v2.js';

/**
 * A manifest the service can serve: format 1 (pixel frames, one cache) or format 2 (latent frames,
 * VAE graphs, two caches). The API reads only what both share: name, hash, frame size, chunk length,
 * window, schedule length, default steps, labels and guidance.
 */
export type ServedManifest = Manifest | ManifestV2;

/** Validates an already parsed manifest of either format; `source` only names it in the error. */
export function parseServedManifest(raw: unknown, source = 'manifest.json'): ServedManifest {
  const format = (raw as { format?: unknown } | null)?.format;
  if (format !== 2) return parseManifest(raw, source);
  const parsed = ManifestV2Schema.safeParse(raw);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`);
    throw new ManifestInvalidError(source, issues, { cause: parsed.error });
  }
  return parsed.data;
}

/** Whether the model works on latent frames (format 2): it needs starting frames and continues no stored video yet. */
export const isLatentManifest = (m: ServedManifest): m is ManifestV2 => m.format === 2;
