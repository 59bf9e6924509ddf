import { endJob } from '../shared/jobs/lifecycle.js';
import type { QueueMessage } from '../shared/queue/task-queue.js';
import { ChunkTaskSchema, type ChunkTask } from '../shared/schemas/chunk-task.js';
import { runChunkStep, type ChunkDeps, type ChunkOutcome } from './chunk-step.js';
import { ChunkFailure, OutOfOrderError } from './errors.js';
import { VisibilityHeartbeat } from './heartbeat.js';
import { latentWindowBudget } from './latent-chunk.js';
import { log } from './log.js';
import { isLatentModel } from './served-model.js';
import { TaskProtection } from './task-protection.js';
import { SegmentWrites } from './segment-io.js';
import { defaultWindowBudget, WindowMemo } from './window-memo.js';

/**
 * Segments this large are stored off the critical path, their t = 0 pass included. Smaller ones
 * take milliseconds, and storing them before the job advances keeps a crash at any instant from
 * costing a rebuild.
 */
export const DEFER_SEGMENT_BYTES = 8 * 2 ** 20;

export interface WorkerOptions extends ChunkDeps {
  /** Visibility window of a received task; the heartbeat renews it at half this. Default 60 s. */
  visibilitySec?: number;
  /** Long-poll wait of one receive; also bounds how long close() waits for an idle loop. Default 2 s. */
  waitSec?: number;
  /** Bytes of cache windows kept for jobs' next chunks (default: from the manifest and the machine, defaultWindowBudget; 0 = always read from the store). */
  windowMemoBytes?: number;
  /** Segments of at least this many bytes are stored while the next chunk runs (default 8 MiB; Infinity = never). */
  deferSegmentBytes?: number;
  /** Release the ONNX session on close (when this worker owns it). */
  ownsModel?: boolean;
  protection?: TaskProtection;
  /** Called after every task, e.g. for a progress bar or a benchmark's per-chunk timings. */
  onTask?: (event: TaskEvent) => void;
}

export interface TaskEvent {
  task: ChunkTask;
  outcome: ChunkOutcome | 'failed' | 'retry';
  seconds: number;
  error?: string;
}

/**
 * Takes chunk tasks one at a time and runs the chunk step. Lifecycle as BullMQ's worker: run()
 * once, close() idempotent and draining (the chunk in flight finishes, then the loop stops).
 */
export class ChunkWorker {
  private running?: Promise<void>;
  private closing?: Promise<void>;
  private stopped = false;
  private readonly heartbeat: VisibilityHeartbeat;
  private readonly visibilitySec: number;
  private readonly protection: TaskProtection;
  private readonly deps: ChunkDeps;
  private readonly segmentWrites = new SegmentWrites();

  constructor(private readonly opts: WorkerOptions) {
    const memoBytes = opts.windowMemoBytes ?? (isLatentModel(opts.model) ? latentWindowBudget(opts.model.manifest) : defaultWindowBudget(opts.model.manifest));
    this.deps = {
      ...opts,
      windowMemo: memoBytes > 0 ? new WindowMemo(memoBytes) : undefined,
      segmentWrites: this.segmentWrites,
      deferSegmentBytes: opts.deferSegmentBytes ?? DEFER_SEGMENT_BYTES,
    };
    this.visibilitySec = opts.visibilitySec ?? 60;
    this.heartbeat = new VisibilityHeartbeat(opts.chunkQueue, this.visibilitySec);
    this.protection = opts.protection ?? new TaskProtection();
  }

  run(): Promise<void> {
    if (this.running) throw new Error('ChunkWorker.run() called twice');
    this.running = this.loop();
    return this.running;
  }

  /** Stop receiving, let the chunk in flight finish, release resources. Same promise every call. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.stopped = true;
      try { await this.running; } catch (error) { log.error('worker loop failed', { error: String(error) }); }
      try { await this.segmentWrites.drain(); } catch (error) { log.error('segment writes failed', { error: String(error) }); }
      this.deps.windowMemo?.clear();
      try { this.heartbeat.close(); } catch { /* timers only */ }
      if (this.opts.ownsModel) {
        try { await this.opts.model.release(); } catch (error) { log.warn('model release failed', { error: String(error) }); }
      }
    })();
    return this.closing;
  }

  // Fetch loop: one task per receive (a chunk saturates the accelerator, so more would only wait
  // while their visibility runs out); the long poll keeps an idle worker cheap. Receive errors
  // (network, throttling) back off and retry; they never end the loop.
  private async loop(): Promise<void> {
    let backoff = 0;
    while (!this.stopped) {
      let messages: QueueMessage[];
      try {
        messages = await this.opts.chunkQueue.receive({ max: 1, visibilitySec: this.visibilitySec, waitSec: this.opts.waitSec ?? 2 });
        backoff = 0;
      } catch (error) {
        backoff = Math.min(30_000, backoff ? backoff * 2 : 500);
        log.warn('receive failed, retrying', { error: String(error), backoff_ms: backoff });
        await new Promise((r) => setTimeout(r, backoff));
        continue;
      }
      for (const message of messages) {
        // process() settles every task itself; this only keeps a broken store or queue (its
        // lease protection, say) from ending the loop: the task is redelivered.
        try {
          await this.process(message);
        } catch (error) {
          log.error('chunk task left for redelivery', { error: String(error) });
        }
      }
    }
  }

  /** Takes and runs one task if one arrives within the wait (benchmarks and tools step through a queue with it). */
  async processNext(): Promise<TaskEvent['outcome'] | undefined> {
    const [message] = await this.opts.chunkQueue.receive({ max: 1, visibilitySec: this.visibilitySec, waitSec: this.opts.waitSec ?? 2 });
    return message ? this.process(message) : undefined;
  }

  private async process(message: QueueMessage): Promise<TaskEvent['outcome']> {
    const parsed = ChunkTaskSchema.safeParse(safeJson(message.body));
    if (!parsed.success) {
      log.error('malformed chunk task dropped', { body: message.body.slice(0, 200), error: parsed.error.message });
      await this.opts.chunkQueue.delete(message.receiptHandle).catch((error) =>
        log.warn('could not delete a malformed task; it comes back and is dropped again', { error: String(error) }));
      return 'failed';
    }
    const task = parsed.data;
    const controller = new AbortController();
    const onLost = (handle: string, error: unknown) => {
      if (handle !== message.receiptHandle) return;
      log.warn('lost the task lease, aborting the chunk', { job: task.job, chunk: task.chunk, error: String(error) });
      controller.abort(error);
    };
    this.heartbeat.on('lost', onLost);
    this.heartbeat.track(message.receiptHandle);
    await this.protection.set(true);
    const started = performance.now();
    const fields = { job: task.job, chunk: task.chunk, receive_count: message.receiveCount };
    let outcome: TaskEvent['outcome'] = 'retry';
    let error: string | undefined;
    try {
      let deleted = false;
      const remove = async () => {
        this.heartbeat.untrack(message.receiptHandle);
        await this.opts.chunkQueue.delete(message.receiptHandle);
        deleted = true;
      };
      // Deleted as soon as the chunk is recorded, while a background cache write may still run.
      outcome = await runChunkStep(this.deps, task, controller.signal, remove);
      if (!deleted) await remove();
      log.info('chunk task done', { ...fields, outcome, seconds: elapsed(started) });
    } catch (err) {
      error = String(err);
      if (err instanceof ChunkFailure) {
        try {
          await this.failJob(task, err);
          await this.opts.chunkQueue.delete(message.receiptHandle);
          outcome = 'failed';
          log.error('job failed', { ...fields, code: err.code, error });
        } catch (recordErr) {
          // The failure is not recorded yet: leave the task, whose redelivery fails the job again.
          log.error('could not record the job failure, will be retried', { ...fields, code: err.code, error: String(recordErr) });
        }
      } else if (err instanceof OutOfOrderError) {
        log.warn('chunk out of order, left for redelivery', { ...fields, error });
      } else {
        // Unknown or transient: leave the task; it is redelivered, and after max receives the
        // dead-letter queue's handler fails the job with a reason.
        log.error('chunk task failed, will be retried', { ...fields, error, stack: (err as Error)?.stack });
      }
    } finally {
      this.heartbeat.untrack(message.receiptHandle);
      this.heartbeat.off('lost', onLost);
      await this.protection.set(false);
      this.opts.onTask?.({ task, outcome, seconds: elapsed(started), error });
    }
    return outcome;
  }

  private async failJob(task: ChunkTask, failure: ChunkFailure): Promise<void> {
    await endJob(this.opts, { tenant: task.tenant, id: task.job }, { status: 'failed', error: { code: failure.code, message: failure.message } });
  }
}

const elapsed = (start: number) => Math.round(performance.now() - start) / 1000;

function safeJson(body: string): unknown {
  try { return JSON.parse(body); } catch { return undefined; }
}
