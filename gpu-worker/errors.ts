/** Errors of the chunk step. Decided with instanceof: a failure ends the job, the rest are retried. */
export class WorkerError extends Error {
  override name = 'WorkerError';
}

/** Permanent: the job cannot go on (bad request, corrupt cache). The job is failed with `code`. */
export class ChunkFailure extends WorkerError {
  override name = 'ChunkFailure';
  constructor(readonly code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** Chunk k arrived before chunk k-1 was recorded; the task is left for redelivery. */
export class OutOfOrderError extends WorkerError {
  override name = 'OutOfOrderError';
  constructor(readonly job: string, readonly chunk: number, readonly chunksDone: number) {
    super(`job ${job}: chunk ${chunk} arrived with ${chunksDone} chunks done`);
  }
}
