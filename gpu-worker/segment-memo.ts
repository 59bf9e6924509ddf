/**
 * Decoded cache segments this worker wrote or read lately, keyed by store key. Segments are
 * write-once, so a memo entry never goes stale; when the next chunk of a job lands on the same
 * worker (always, with one worker) its cache is assembled without reading or decoding anything.
 * Entries hold exactly the values stored (fp16-rounded), so a hit and a miss give the same frames.
 */
export class SegmentMemo {
  private readonly entries = new Map<string, Float32Array>();
  private bytes = 0;

  constructor(private readonly maxBytes = 256 * 2 ** 20) {}

  get(key: string): Float32Array | undefined {
    const value = this.entries.get(key);
    if (value) {
      // Refresh recency: Map iteration order is insertion order, oldest first.
      this.entries.delete(key);
      this.entries.set(key, value);
    }
    return value;
  }

  set(key: string, value: Float32Array): void {
    if (value.byteLength > this.maxBytes) return;
    const old = this.entries.get(key);
    if (old) this.bytes -= old.byteLength;
    this.entries.delete(key);
    this.entries.set(key, value);
    this.bytes += value.byteLength;
    for (const [k, v] of this.entries) {
      if (this.bytes <= this.maxBytes) break;
      this.entries.delete(k);
      this.bytes -= v.byteLength;
    }
  }
}
