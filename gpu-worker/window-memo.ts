import * as os from 'node:os';
import type { AssembledWindow } from '../shared/cache/assemble.js';
import type { Manifest } from '../shared/model/manifest.js';
import { log } from './log.js';

/**
 * Each job's cache window as this worker last left it, ready for the job's next chunk. When that
 * chunk lands here (always, with one worker), the chunk step neither reads nor assembles segments:
 * it advances the window in place by the frames it just computed. Entries hold exactly the values
 * stored (fp16-rounded), so a hit and an assembly from the store give the same bytes. LRU by bytes.
 */
export class WindowMemo {
  private readonly entries = new Map<string, AssembledWindow>();
  private bytes = 0;
  private warned = false;

  constructor(readonly maxBytes = 256 * 2 ** 20) {}

  /**
   * Whether a window of `bytes` can be kept at all; when it cannot, says so once, loudly, so that a
   * worker running every chunk cold is never a silent surprise. The chunk step asks first and then
   * spends nothing on a window that would be dropped.
   */
  keeps(bytes: number, fields: Record<string, unknown> = {}): boolean {
    if (bytes <= this.maxBytes) return true;
    if (!this.warned) {
      this.warned = true;
      log.error('cache window too large for the window memo: every chunk of such jobs reads its window from the store', {
        ...fields, window_bytes: bytes, memo_bytes: this.maxBytes, fix: 'give the worker more memory or set WINDOW_MEMO_BYTES',
      });
    }
    return false;
  }

  /** The job's window if it ends exactly at `endFrame`; taken out, so a failed chunk can never leave a half-advanced one. */
  take(job: string, endFrame: number): AssembledWindow | undefined {
    const window = this.entries.get(job);
    if (!window) return undefined;
    this.delete(job);
    return window.firstFrame + window.frames === endFrame ? window : undefined;
  }

  put(job: string, window: AssembledWindow): void {
    this.delete(job);
    if (window.cache.byteLength > this.maxBytes) return;
    this.entries.set(job, window);
    this.bytes += window.cache.byteLength;
    for (const key of this.entries.keys()) {
      if (this.bytes <= this.maxBytes) break;
      this.delete(key); // oldest first: Map keys iterate in insertion order
    }
  }

  /** Drops every window (a closing worker gives their memory back at once). */
  clear(): void {
    this.entries.clear();
    this.bytes = 0;
  }

  private delete(job: string): void {
    const old = this.entries.get(job);
    if (!old) return;
    this.entries.delete(job);
    this.bytes -= old.cache.byteLength;
  }
}

/** Bytes of one full window of `m` with `rows` rows, as the worker holds it (the graph's cache_dtype). */
export function windowBytes(m: Manifest, rows: number): number {
  return m.p_max * m.depth * 2 * rows * m.tokens_per_frame * m.width * (m.cache_dtype === 'float16' ? 2 : 4);
}

/**
 * The memo's default budget, from the manifest and the machine: half of the memory this process may
 * use (the container's limit where there is one), less what one chunk needs besides kept windows
 * (a guided window being read cold, and two chunks of K/V: one being stored, one just computed).
 * At the paper's size a 16 GiB g5.xlarge keeps three guided windows; the shipped toy model, hundreds.
 */
export function defaultWindowBudget(m: Manifest, memory = machineMemory()): number {
  const chunkKv = m.chunk_frames * m.depth * 2 * 2 * m.tokens_per_frame * m.width * (m.kv_dtype === 'float16' ? 2 : 4);
  return Math.max(0, Math.floor(memory / 2 - windowBytes(m, 2) - 2 * chunkKv));
}

function machineMemory(): number {
  const limit = typeof process.constrainedMemory === 'function' ? process.constrainedMemory() : 0;
  return limit && limit > 0 && limit < os.totalmem() ? limit : os.totalmem();
}
