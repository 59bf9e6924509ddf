import { EventEmitter } from 'node:events';
import type { TaskQueue } from '../shared/queue/task-queue.js';

/**
 * Keeps in-flight messages invisible while their chunk runs: extends visibility every half window.
 * When a renewal fails the message may go to another worker, so `lost` fires and the caller aborts.
 */
export class VisibilityHeartbeat extends EventEmitter<{ lost: [receiptHandle: string, error: unknown] }> {
  private readonly timers = new Map<string, NodeJS.Timeout>();

  constructor(private readonly queue: TaskQueue, private readonly visibilitySec: number) {
    super();
  }

  track(receiptHandle: string): void {
    this.untrack(receiptHandle);
    const renew = async () => {
      try {
        await this.queue.extendVisibility(receiptHandle, this.visibilitySec);
      } catch (error) {
        this.untrack(receiptHandle);
        this.emit('lost', receiptHandle, error);
      }
    };
    const timer = setInterval(() => void renew(), (this.visibilitySec * 1000) / 2);
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
