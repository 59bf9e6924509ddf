/**
 * Receives of a chunk task before it is dead-lettered and its job failed (`max_receives`): the SQS
 * redrive policy of the chunk queue (infra/constructs/queues.ts) and the embedded queue both use it.
 * A chunk step is idempotent, so a retry is cheap; three receives ride out a crash or a lost lease
 * twice, and a task that fails every time is a bug to surface, not to repeat.
 */
export const CHUNK_MAX_RECEIVES = 3;
