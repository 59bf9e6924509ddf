import { randomBytes, randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { withFileLock, writeFileAtomic, type FileLockOptions } from '../store/file-lock.js';
import { ReceiptHandleInvalidError } from './errors.js';
import {
  DEDUP_WINDOW_MS,
  type QueueMessage,
  type ReceiveOptions,
  type SendOptions,
  type SendResult,
  type TaskQueue,
} from './task-queue.js';

export interface LocalQueueOptions {
  /** Folder holding `state.json`; two `LocalQueue`s on one folder (any process) share one queue. */
  dir: string;
  /** A message received this many times is dead-lettered on its next receive (SQS `maxReceiveCount`). Unlimited if absent. */
  maxReceives?: number;
  /** Where dead letters go; if absent they are kept in this queue's state and read with `deadLetters()`. */
  deadLetterQueue?: TaskQueue;
  /** Milliseconds since the epoch; injected by tests to expire visibility without waiting. */
  now?: () => number;
  /** How often a long poll re-reads the state for messages sent by other processes. */
  pollMs?: number;
  lock?: FileLockOptions;
}

/** A message that exceeded `maxReceives` and had no dead-letter queue to go to. */
export interface DeadLetter {
  id: string;
  body: string;
  groupId: string;
  dedupId: string;
  receiveCount: number;
  deadAt: number;
}

interface StoredMessage {
  id: string;
  body: string;
  groupId: string;
  dedupId: string;
  /** Hidden until then: a delay after sending, or the visibility window after a receive. */
  visibleAt: number;
  receiveCount: number;
  /** Token of the current delivery; a handle with an older token is stale. */
  receipt?: string;
}

interface State {
  version: 1;
  /** In send order, which is the FIFO order within each group. */
  messages: StoredMessage[];
  dedup: Record<string, { id: string; expiresAt: number }>;
  dead: DeadLetter[];
}

// Wakes long polls in this process as soon as a message is sent, instead of at the next poll tick.
const sent = new EventEmitter().setMaxListeners(0);

/**
 * Embedded, durable FIFO queue with SQS FIFO semantics: groups (one message of a group in flight,
 * in order), 5-minute deduplication, visibility timeouts, receive counts and dead-lettering.
 * Every operation is read-modify-write of one JSON file under a lock file, so it is safe for many
 * worker loops in one process and across processes; a write is a temp file + rename, so a crash
 * leaves the old or the new state. Visibility is stored as an absolute time, so a message in
 * flight when the process died is redelivered once its window has passed.
 */
export class LocalQueue implements TaskQueue {
  readonly dir: string;
  private readonly now: () => number;
  private readonly file: string;

  constructor(private readonly options: LocalQueueOptions) {
    this.dir = path.resolve(options.dir);
    this.file = path.join(this.dir, 'state.json');
    this.now = options.now ?? Date.now;
  }

  async send(body: string, { groupId, dedupId, delaySec = 0 }: SendOptions): Promise<SendResult> {
    const result = await this.update((state, now) => {
      const seen = state.dedup[dedupId];
      if (seen && seen.expiresAt > now) return { id: seen.id };
      const id = randomUUID();
      state.messages.push({ id, body, groupId, dedupId, visibleAt: now + delaySec * 1000, receiveCount: 0 });
      state.dedup[dedupId] = { id, expiresAt: now + DEDUP_WINDOW_MS };
      return { id };
    });
    sent.emit(this.dir);
    return result;
  }

  async receive({ max = 1, visibilitySec, waitSec = 0 }: ReceiveOptions): Promise<QueueMessage[]> {
    // Wall-clock deadline: long polling waits in real time even when tests inject `now`.
    const deadline = Date.now() + waitSec * 1000;
    for (;;) {
      const got = await this.receiveOnce(max, visibilitySec);
      const left = deadline - Date.now();
      if (got.length > 0 || left <= 0) return got;
      await this.waitForSend(Math.min(left, this.options.pollMs ?? 100));
    }
  }

  async extendVisibility(receiptHandle: string, sec: number): Promise<void> {
    await this.update((state, now) => {
      const msg = findByHandle(state, receiptHandle);
      if (!msg || msg.visibleAt <= now) throw new ReceiptHandleInvalidError(receiptHandle);
      msg.visibleAt = now + sec * 1000;
    });
  }

  async delete(receiptHandle: string): Promise<void> {
    await this.update((state) => {
      const msg = findByHandle(state, receiptHandle);
      if (msg) state.messages.splice(state.messages.indexOf(msg), 1);
    });
  }

  /** Dead letters kept in this queue (only when no `deadLetterQueue` was given). */
  async deadLetters(): Promise<DeadLetter[]> {
    return (await this.read()).dead;
  }

  /** Messages not yet deleted, in flight or not; for tests and operators. */
  async depth(): Promise<number> {
    return (await this.read()).messages.length;
  }

  private async receiveOnce(max: number, visibilitySec: number): Promise<QueueMessage[]> {
    const { deadLetterQueue, maxReceives } = this.options;
    return this.update(async (state, now) => {
      for (const [k, v] of Object.entries(state.dedup)) if (v.expiresAt <= now) delete state.dedup[k];
      // A group is closed while any of its messages is in flight; only a group's oldest message may go out.
      const closed = new Set(state.messages.filter((m) => m.receipt && m.visibleAt > now).map((m) => m.groupId));
      const out: QueueMessage[] = [];
      for (const msg of [...state.messages]) {
        if (out.length >= max) break;
        if (closed.has(msg.groupId)) continue;
        if (msg.visibleAt > now) {
          closed.add(msg.groupId); // a delayed head holds back the rest of its group
          continue;
        }
        if (maxReceives !== undefined && msg.receiveCount >= maxReceives) {
          // Dead-letter first, remove after: a failed send leaves the state untouched (not written).
          if (deadLetterQueue) await deadLetterQueue.send(msg.body, { groupId: msg.groupId, dedupId: `dlq-${msg.id}` });
          else state.dead.push({ ...pick(msg), deadAt: now });
          state.messages.splice(state.messages.indexOf(msg), 1);
          continue; // the group's next message may go out in this same call
        }
        msg.receiveCount += 1;
        msg.receipt = randomBytes(12).toString('hex');
        msg.visibleAt = now + visibilitySec * 1000;
        closed.add(msg.groupId);
        out.push({
          id: msg.id,
          receiptHandle: `${msg.id}.${msg.receipt}`,
          body: msg.body,
          receiveCount: msg.receiveCount,
          groupId: msg.groupId,
        });
      }
      return out;
    });
  }

  private waitForSend(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        sent.off(this.dir, done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      sent.on(this.dir, done);
    });
  }

  /** Runs `fn` on the current state under the lock and persists it if `fn` returns normally. */
  private update<T>(fn: (state: State, now: number) => T | Promise<T>): Promise<T> {
    return withFileLock(
      path.join(this.dir, 'queue.lock'),
      async () => {
        const state = await this.read();
        const before = JSON.stringify(state);
        const result = await fn(state, this.now());
        const after = JSON.stringify(state);
        if (after !== before) await writeFileAtomic(this.file, after, path.join(this.dir, '.tmp'));
        return result;
      },
      this.options.lock,
    );
  }

  private async read(): Promise<State> {
    try {
      return JSON.parse(await fs.readFile(this.file, 'utf8')) as State;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { version: 1, messages: [], dedup: {}, dead: [] };
      throw err;
    }
  }
}

function findByHandle(state: State, handle: string): StoredMessage | undefined {
  const dot = handle.indexOf('.');
  if (dot < 0) return undefined;
  const id = handle.slice(0, dot);
  const token = handle.slice(dot + 1);
  return state.messages.find((m) => m.id === id && m.receipt === token);
}

function pick({ id, body, groupId, dedupId, receiveCount }: StoredMessage) {
  return { id, body, groupId, dedupId, receiveCount };
}
