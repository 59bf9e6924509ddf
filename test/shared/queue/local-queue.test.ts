import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { LocalQueue } from '../../../shared/queue/local-queue.js';
import { DEDUP_WINDOW_MS } from '../../../shared/queue/task-queue.js';
import { describeTaskQueueContract } from './task-queue.contract.js';

const dirs: string[] = [];
async function tempDir(): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'local-queue-'));
  dirs.push(dir);
  return dir;
}
afterAll(() => Promise.all(dirs.map((d) => fs.rm(d, { recursive: true, force: true }))));

/** A settable clock shared by queues that model one machine. */
function fakeClock(start = 1_700_000_000_000) {
  let t = start;
  return { now: () => t, advance: (ms: number) => void (t += ms) };
}

describeTaskQueueContract('LocalQueue', async ({ maxReceives }) => {
  const root = await tempDir();
  const clock = fakeClock();
  const dlq = new LocalQueue({ dir: path.join(root, 'dlq'), now: clock.now });
  const queue = new LocalQueue({ dir: path.join(root, 'q'), maxReceives, deadLetterQueue: dlq, now: clock.now });
  return {
    queue,
    advance: async (sec) => clock.advance(sec * 1000),
    deadLetters: async () => (await dlq.receive({ max: 100, visibilitySec: 30 })).map((m) => m.body),
  };
});

describe('LocalQueue specifics', () => {
  it('survives re-instantiation on the same folder, redelivering an expired in-flight message', async () => {
    const dir = await tempDir();
    const clock = fakeClock();
    const before = new LocalQueue({ dir, now: clock.now });
    await before.send('waiting', { groupId: 'a', dedupId: 'a0' });
    await before.send('in flight', { groupId: 'b', dedupId: 'b0' });
    const taken = await before.receive({ max: 1, visibilitySec: 30 });
    expect(taken[0].body).toBe('waiting');
    await before.receive({ max: 1, visibilitySec: 30 }); // 'in flight' is now hidden; the process "dies"

    const after = new LocalQueue({ dir, now: clock.now });
    expect(await after.receive({ max: 10, visibilitySec: 30 })).toEqual([]);
    clock.advance(31_000);
    const again = await after.receive({ max: 10, visibilitySec: 30 });
    expect(again.map((m) => [m.body, m.receiveCount]).sort()).toEqual([
      ['in flight', 2],
      ['waiting', 2],
    ]);
    // Dedup state is durable too: a resend after the restart is still dropped.
    expect((await after.send('waiting', { groupId: 'a', dedupId: 'a0' })).id).toBe(taken[0].id);
  });

  it('keeps dead letters readable when no dead-letter queue is configured', async () => {
    const clock = fakeClock();
    const queue = new LocalQueue({ dir: await tempDir(), maxReceives: 1, now: clock.now });
    await queue.send('poison', { groupId: 'g', dedupId: 'p' });
    await queue.send('next', { groupId: 'g', dedupId: 'n' });
    await queue.receive({ visibilitySec: 1 });
    clock.advance(2_000);
    // The poison message is dead-lettered and the group's next message goes out in the same call.
    expect((await queue.receive({ visibilitySec: 1 })).map((m) => m.body)).toEqual(['next']);
    expect(await queue.deadLetters()).toMatchObject([{ body: 'poison', groupId: 'g', receiveCount: 1 }]);
  });

  it('forgets a dedupId after 5 minutes', async () => {
    const clock = fakeClock();
    const queue = new LocalQueue({ dir: await tempDir(), now: clock.now });
    const first = await queue.send('x', { groupId: 'g', dedupId: 'same' });
    clock.advance(DEDUP_WINDOW_MS + 1);
    const second = await queue.send('x', { groupId: 'g', dedupId: 'same' });
    expect(second.id).not.toBe(first.id);
    expect(await queue.depth()).toBe(2);
  });

  it('holds a delayed message, and the rest of its group, until the delay passes', async () => {
    const clock = fakeClock();
    const queue = new LocalQueue({ dir: await tempDir(), now: clock.now });
    await queue.send('later', { groupId: 'g', dedupId: 'l', delaySec: 10 });
    await queue.send('after later', { groupId: 'g', dedupId: 'al' });
    expect(await queue.receive({ visibilitySec: 5, max: 10 })).toEqual([]);
    clock.advance(10_000);
    expect((await queue.receive({ visibilitySec: 5, max: 10 })).map((m) => m.body)).toEqual(['later']);
  });

  it('wakes a long poll as soon as a message is sent', async () => {
    const queue = new LocalQueue({ dir: await tempDir(), pollMs: 10_000 });
    const started = Date.now();
    const polled = queue.receive({ visibilitySec: 5, waitSec: 5 });
    setTimeout(() => void queue.send('hi', { groupId: 'g', dedupId: 'h' }), 50);
    expect((await polled).map((m) => m.body)).toEqual(['hi']);
    expect(Date.now() - started).toBeLessThan(2_000);
  });

  it('serves several worker loops in one process: each task once, groups in order, one in flight per group', async () => {
    const dir = await tempDir();
    const groups = ['j1', 'j2', 'j3', 'j4', 'j5'];
    const producer = new LocalQueue({ dir });
    for (let k = 0; k < 6; k++) for (const g of groups) await producer.send(`${g}:${k}`, { groupId: g, dedupId: `${g}:${k}` });

    const done: string[] = [];
    const inFlight = new Set<string>();
    let overlap = false;
    const loop = async () => {
      const queue = new LocalQueue({ dir }); // each loop its own instance, as separate workers would have
      for (let idle = 0; idle < 3; ) {
        const [msg] = await queue.receive({ visibilitySec: 30, waitSec: 0.05 });
        if (!msg) {
          idle++;
          continue;
        }
        idle = 0;
        const group = msg.body.split(':')[0];
        if (inFlight.has(group)) overlap = true;
        inFlight.add(group);
        await new Promise((r) => setTimeout(r, Math.random() * 5));
        done.push(msg.body);
        inFlight.delete(group);
        await queue.delete(msg.receiptHandle);
      }
    };
    await Promise.all([loop(), loop(), loop(), loop()]);
    expect(overlap).toBe(false);
    expect(done).toHaveLength(30);
    for (const g of groups) {
      expect(done.filter((b) => b.startsWith(`${g}:`))).toEqual([0, 1, 2, 3, 4, 5].map((k) => `${g}:${k}`));
    }
  });
});
