import { afterEach, describe, expect, it } from 'vitest';
import { ReceiptHandleInvalidError } from '../../../shared/queue/errors.js';
import type { QueueMessage, TaskQueue } from '../../../shared/queue/task-queue.js';

export interface QueueFixture {
  queue: TaskQueue;
  /** Let `sec` seconds pass for visibility: a fake clock for the local queue, a real sleep for emulators. */
  advance(sec: number): Promise<void>;
  /** Bodies that reached the dead-letter target so far. */
  deadLetters(): Promise<string[]>;
  cleanup?(): Promise<void>;
}

export interface QueueContractOptions {
  /** Every fixture must dead-letter after this many receives. */
  maxReceives: number;
}

/** Contract cases a backend may not emulate; each maps to the reason it is skipped. */
export interface QueueContractSkips {
  groupOneInFlight?: string;
}

const VIS = 1; // seconds; SQS's granularity, and short enough for real-time emulator tests

/** The behaviour every `TaskQueue` adapter must have; run once per adapter. */
export function describeTaskQueueContract(
  name: string,
  makeQueue: (options: QueueContractOptions) => Promise<QueueFixture>,
  skips: QueueContractSkips = {},
): void {
  describe(`TaskQueue contract: ${name}`, () => {
    let fx: QueueFixture | undefined;
    const open = async (maxReceives = 3) => (fx = await makeQueue({ maxReceives }));
    afterEach(async () => {
      await fx?.cleanup?.();
      fx = undefined;
    });
    const receiveOne = async (q: TaskQueue): Promise<QueueMessage | undefined> => (await q.receive({ visibilitySec: VIS }))[0];

    it('sends, receives with receiveCount 1, deletes', async () => {
      const { queue } = await open();
      expect(await queue.receive({ visibilitySec: VIS })).toEqual([]);
      const { id } = await queue.send('{"chunk":0}', { groupId: 'job1', dedupId: 'job1:0' });
      const msg = await receiveOne(queue);
      expect(msg).toMatchObject({ id, body: '{"chunk":0}', receiveCount: 1 });
      await queue.delete(msg!.receiptHandle);
      expect(await queue.receive({ visibilitySec: VIS })).toEqual([]);
    });

    it('hides a received message, then redelivers it after expiry with receiveCount + 1 and a new handle', async () => {
      const { queue, advance } = await open();
      await queue.send('task', { groupId: 'g', dedupId: 'd1' });
      const first = await receiveOne(queue);
      expect(await queue.receive({ visibilitySec: VIS })).toEqual([]);
      await advance(VIS + 0.3);
      const second = await receiveOne(queue);
      expect(second).toMatchObject({ id: first!.id, body: 'task', receiveCount: 2 });
      expect(second!.receiptHandle).not.toBe(first!.receiptHandle);
    });

    it('extendVisibility keeps a message hidden past its first window', async () => {
      const { queue, advance } = await open();
      await queue.send('long chunk', { groupId: 'g', dedupId: 'd1' });
      const msg = await receiveOne(queue);
      await queue.extendVisibility(msg!.receiptHandle, 4);
      await advance(VIS + 0.5);
      expect(await queue.receive({ visibilitySec: VIS })).toEqual([]);
      await queue.delete(msg!.receiptHandle);
    });

    it('extendVisibility with a stale handle throws ReceiptHandleInvalidError; a stale delete is a no-op', async () => {
      const { queue } = await open();
      await queue.send('x', { groupId: 'g', dedupId: 'd1' });
      const msg = await receiveOne(queue);
      await queue.delete(msg!.receiptHandle);
      await expect(queue.extendVisibility(msg!.receiptHandle, 5)).rejects.toBeInstanceOf(ReceiptHandleInvalidError);
      await expect(queue.delete(msg!.receiptHandle)).resolves.toBeUndefined();
    });

    it('delivers a group in send order', async () => {
      const { queue } = await open();
      for (const k of [0, 1, 2, 3]) await queue.send(`job1:${k}`, { groupId: 'job1', dedupId: `job1:${k}` });
      const seen: string[] = [];
      for (let i = 0; i < 4; i++) {
        const msg = await receiveOne(queue);
        seen.push(msg!.body);
        await queue.delete(msg!.receiptHandle);
      }
      expect(seen).toEqual(['job1:0', 'job1:1', 'job1:2', 'job1:3']);
    });

    const itGroup = skips.groupOneInFlight ? it.skip : it;
    itGroup(
      `keeps one message per group in flight while other groups proceed${skips.groupOneInFlight ? ` [skipped: ${skips.groupOneInFlight}]` : ''}`,
      async () => {
        const { queue } = await open();
        await queue.send('a0', { groupId: 'a', dedupId: 'a0' });
        await queue.send('a1', { groupId: 'a', dedupId: 'a1' });
        await queue.send('b0', { groupId: 'b', dedupId: 'b0' });
        const a0 = await receiveOne(queue);
        const b0 = await receiveOne(queue);
        expect([a0?.body, b0?.body]).toEqual(['a0', 'b0']);
        expect(await queue.receive({ visibilitySec: VIS })).toEqual([]);
        await queue.delete(a0!.receiptHandle);
        expect((await receiveOne(queue))?.body).toBe('a1');
      },
    );

    it('drops a second send with the same dedupId', async () => {
      const { queue } = await open();
      const first = await queue.send('k1', { groupId: 'job1', dedupId: 'job1:1' });
      const again = await queue.send('k1', { groupId: 'job1', dedupId: 'job1:1' });
      expect(again.id).toBe(first.id);
      const msg = await receiveOne(queue);
      await queue.delete(msg!.receiptHandle);
      expect(await queue.receive({ visibilitySec: VIS })).toEqual([]);
    });

    it('returns several groups in one receive up to max', async () => {
      const { queue } = await open();
      for (const g of ['a', 'b', 'c']) await queue.send(g, { groupId: g, dedupId: g });
      const got = await queue.receive({ visibilitySec: VIS, max: 10 });
      expect(got.map((m) => m.body).sort()).toEqual(['a', 'b', 'c']);
    });

    it('dead-letters a message after maxReceives receives', async () => {
      const { queue, advance, deadLetters } = await open(2);
      await queue.send('poison', { groupId: 'g', dedupId: 'p' });
      expect((await receiveOne(queue))?.receiveCount).toBe(1);
      await advance(VIS + 0.3);
      expect((await receiveOne(queue))?.receiveCount).toBe(2);
      await advance(VIS + 0.3);
      expect(await queue.receive({ visibilitySec: VIS })).toEqual([]);
      expect(await deadLetters()).toEqual(['poison']);
    });
  });
}
