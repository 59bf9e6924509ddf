
/** Class index of a label given by name or index, or null when the model has no such label. */
export function resolveLabel(manifest: { labels: readonly string[] }, label: string | number): number | null {
  if (typeof label === 'number') return Number.isInteger(label) && label >= 0 && label < manifest.labels.length ? label : null;
  const i = manifest.labels.indexOf(label);
  return i >= 0 ? i : null;
}
