import type { AssembledCache } from '../shared/cache/assemble.js';

/**
 * Each job's cache window as this worker last left it, ready for the job's next chunk. When that
 * chunk lands here (always, with one worker), the chunk step neither reads nor assembles segments:
 * it advances the window in place by the frames it just computed. Entries hold exactly the values
 * stored (fp16-rounded), so a hit and an assembly from the store give the same bytes. LRU by bytes.
 */
export class WindowMemo {
  private readonly entries = new Map<string, AssembledCache>();
  private bytes = 0;

  constructor(private readonly maxBytes = 256 * 2 ** 20) {}

  /** The job's window if it ends exactly at `endFrame`; taken out, so a failed chunk can never leave a half-advanced one. */
  take(job: string, endFrame: number): AssembledCache | undefined {
    const window = this.entries.get(job);
    if (!window) return undefined;
    this.delete(job);
    return window.firstFrame + window.frames === endFrame ? window : undefined;
  }

  put(job: string, window: AssembledCache): void {
    this.delete(job);
    if (window.cache.byteLength > this.maxBytes) return;
    this.entries.set(job, window);
    this.bytes += window.cache.byteLength;
    for (const key of this.entries.keys()) {
      if (this.bytes <= this.maxBytes) break;
      this.delete(key); // oldest first: Map keys iterate in insertion order
    }
  }

  private delete(job: string): void {
    const old = this.entries.get(job);
    if (!old) return;
    this.entries.delete(job);
    this.bytes -= old.cache.byteLength;
  }
}
