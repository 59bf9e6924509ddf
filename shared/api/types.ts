import type { ServedManifest } from '../model/served.js';
import type { TaskQueue } from '../queue/task-queue.js';
import type { ObjectStore } from '../store/object-store.js';
import type { Resolver } from '../webhooks/ssrf.js';
import type { ApiConfig } from './config.js';

/** What the API functions need; the Lambda handlers and the embedded server each build one. */
export interface ApiDeps {
  store: ObjectStore;
  chunkQueue: TaskQueue;
  manifest: ServedManifest;
  config: ApiConfig;
  now?: () => Date;
  /** DNS for the webhook URL check; tests inject one. */
  resolve?: Resolver;
}

/** Per-request context: who is calling and how to build links back to the API. */
export interface CallContext {
  tenant: string;
  /** e.g. `http://127.0.0.1:8080`, no trailing slash. */
  baseUrl: string;
}
