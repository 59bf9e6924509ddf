import type { TaskQueue } from '../queue/task-queue.js';
import type { ObjectStore } from '../store/object-store.js';
import { processWebhookMessage, type DeliveryDeps } from './deliver.js';

export interface WebhookDispatcherOptions {
  store: ObjectStore;
  webhookQueue: TaskQueue;
  /** Embedded mode for local testing (the demo): webhooks may target 127.0.0.0/8 and ::1. */
  allowLoopback?: boolean;
  /** Default false: the embedded mode accepts http webhooks. */
  requireHttps?: boolean;
  signal?: AbortSignal;
  /** Base URL of the embedded API, for output links in webhook bodies. */
  baseUrl?: string;
  retryScheduleSec?: readonly number[];
  deadLetterQueue?: TaskQueue;
  /** How many messages are delivered at once. */
  concurrency?: number;
  /** Tests: a different HTTP client, clock or resolver. */
  deliveryOverrides?: Partial<Pick<DeliveryDeps, 'post' | 'now' | 'random' | 'resolve' | 'timeoutMs'>>;
}

const VISIBILITY_SEC = 60;

/**
 * The embedded webhook dispatcher: the loop that the deliver-webhook Lambda replaces in AWS, with
 * the same delivery function. It long-polls the webhook queue, handles each message (deliver,
 * re-queue with backoff, or note the failure) and then deletes it; a message whose handling threw
 * (store or queue down) is left to reappear after its visibility window.
 */
export function startWebhookDispatcher(opts: WebhookDispatcherOptions): { close(): Promise<void> } {
  const stop = new AbortController();
  const onAbort = () => stop.abort();
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  const deps: DeliveryDeps = {
    store: opts.store,
    webhookQueue: opts.webhookQueue,
    policy: { requireHttps: opts.requireHttps ?? false, allowLoopback: opts.allowLoopback ?? false },
    baseUrl: opts.baseUrl,
    retryScheduleSec: opts.retryScheduleSec,
    deadLetterQueue: opts.deadLetterQueue,
    ...opts.deliveryOverrides,
  };

  async function loop(): Promise<void> {
    while (!stop.signal.aborted) {
      let messages;
      try {
        messages = await opts.webhookQueue.receive({ max: opts.concurrency ?? 4, visibilitySec: VISIBILITY_SEC, waitSec: 1 });
      } catch (err) {
        console.error(JSON.stringify({ msg: 'webhook queue receive failed', error: String(err) }));
        await sleep(1000, stop.signal);
        continue;
      }
      await Promise.all(
        messages.map(async (m) => {
          try {
            const outcome = await processWebhookMessage(deps, m.body);
            if (outcome.kind === 'failed') {
              console.warn(JSON.stringify({ msg: 'webhook event not delivered', reason: outcome.reason }));
            }
            await opts.webhookQueue.delete(m.receiptHandle);
          } catch (err) {
            console.error(JSON.stringify({ msg: 'webhook delivery step failed, will retry', error: String(err) }));
          }
        }),
      );
    }
  }

  const running = loop();
  let closing: Promise<void> | undefined;
  return {
    close() {
      closing ??= (async () => {
        stop.abort();
        opts.signal?.removeEventListener('abort', onAbort);
        await running;
      })();
      return closing;
    },
  };
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}
