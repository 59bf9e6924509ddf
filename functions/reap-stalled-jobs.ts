import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import { DEFAULT_STALL_AFTER_SEC, reapStalledJobs, type ReapDeps } from '../shared/jobs/reaper.js';
import { aws } from './lib/deps.js';
import { logger } from './lib/logger.js';

/** Scheduled: sends the next chunk task again for every unfinished job that stopped moving (shared/jobs/reaper.ts). */
export function makeReapHandler(getDeps: () => ReapDeps, stallAfterSec = Number(process.env.STALL_AFTER_SEC ?? DEFAULT_STALL_AFTER_SEC)) {
  return middy().use(injectLambdaContext(logger)).handler(async () => {
    const result = await reapStalledJobs(getDeps(), { stallAfterSec });
    logger.info('reaper pass', { active: result.active, cleared: result.cleared, requeued: result.requeued });
    return { active: result.active, requeued: result.requeued.length, cleared: result.cleared };
  });
}

let deps: ReapDeps | undefined;
export const handler = makeReapHandler(() => (deps ??= { store: aws.store(), chunkQueue: aws.chunkQueue() }));
