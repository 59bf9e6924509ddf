import { EventEmitter } from 'node:events';
import { ReceiptHandleInvalidError } from '../shared/queue/errors.js';
import type { TaskQueue } from '../shared/queue/task-queue.js';
import { log } from './log.js';

/**
 * Keeps in-flight messages invisible while their chunk runs: extends visibility every half window.
 * A stale receipt means the message may be another worker's now, so `lost` fires and the caller
 * aborts. Any other renewal error (throttling, network) is retried every eighth of a window, and
 * counts as lost only once the lease would have run out since the last renewal that succeeded.
 */
export class VisibilityHeartbeat extends EventEmitter<{ lost: [receiptHandle: string, error: unknown] }> {
  private readonly timers = new Map<string, NodeJS.Timeout>();

  constructor(private readonly queue: TaskQueue, private readonly visibilitySec: number) {
    super();
  }

  track(receiptHandle: string): void {
    this.untrack(receiptHandle);
    const windowMs = this.visibilitySec * 1000;
    let renewedAt = Date.now();
    const renew = async () => {
      const timer = this.timers.get(receiptHandle);
      if (!timer) return;
      try {
        await this.queue.extendVisibility(receiptHandle, this.visibilitySec);
        renewedAt = Date.now();
      } catch (error) {
        if (this.timers.get(receiptHandle) !== timer) return;   // untracked (or tracked anew) meanwhile
        if (error instanceof ReceiptHandleInvalidError || Date.now() - renewedAt + windowMs / 8 >= windowMs) {
          this.untrack(receiptHandle);
          this.emit('lost', receiptHandle, error);
          return;
        }
        log.warn('visibility renewal failed, retrying', { error: String(error) });
        setTimeout(() => void renew(), windowMs / 8).unref();
      }
    };
    const timer = setInterval(() => void renew(), windowMs / 2);
    timer.unref();
    this.timers.set(receiptHandle, timer);
  }

  untrack(receiptHandle: string): void {
    clearInterval(this.timers.get(receiptHandle));
    this.timers.delete(receiptHandle);
  }

  close(): void {
    for (const handle of [...this.timers.keys()]) this.untrack(handle);
  }
}
