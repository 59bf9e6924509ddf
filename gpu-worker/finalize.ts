import { updateJob } from '../shared/jobs/job-store.js';
import { frameKey, previewGifKey, videoKey } from '../shared/keys.js';
import { encodeGif } from '../shared/media/gif.js';
import { encodeMp4 } from '../shared/media/mp4.js';
import { pngsToFrames } from '../shared/media/png.js';
import { isTerminal, type Job } from '../shared/schemas/job.js';
import { emitJobEvent } from '../shared/webhooks/emit.js';
import type { ChunkDeps } from './chunk-step.js';
import { ChunkFailure } from './errors.js';
import { geometry, type JobPlan } from './job-plan.js';

/** Encodes output/video.mp4 (H.264) and output/preview.gif from the stored frames; marks the job succeeded. */
export async function finalizeJob(deps: Pick<ChunkDeps, 'store' | 'webhookQueue' | 'model'>, job: Job, plan: JobPlan) {
  const { store } = deps;
  const g = geometry(deps.model.manifest);
  const keys = Array.from({ length: plan.framesTotal }, (_, i) =>
    frameKey(job.tenant, job.id, Math.floor(i / plan.chunkFrames), i % plan.chunkFrames));
  const pngs = await Promise.all(keys.map(async (key) => {
    const obj = await store.get(key);
    if (!obj) throw new ChunkFailure('frames_missing', `frame ${key} is missing`);
    return obj.body;
  }));
  const frames = pngsToFrames(pngs, g);
  const video = videoKey(job.tenant, job.id);
  const gif = previewGifKey(job.tenant, job.id);
  // ffmpeg encodes in its own process while the GIF is encoded here.
  const mp4 = encodeMp4(frames, g);
  mp4.catch(() => {}); // awaited below; a throwing GIF encode must not leave it unhandled
  const preview = encodeGif(frames, g);
  await Promise.all([
    mp4.then((bytes) => store.put(video, bytes, { contentType: 'video/mp4' })),
    store.put(gif, preview, { contentType: 'image/gif' }),
  ]);
  const updated = await updateJob(store, job.tenant, job.id, (j) => {
    if (isTerminal(j.status)) return null;
    const now = new Date();
    j.status = 'succeeded';
    j.outputs = { video, gif };
    j.completed_at = now.toISOString();
    j.metrics.total_s = Math.round((now.getTime() - Date.parse(j.created_at)) / 10) / 100;
    return j;
  });
  if (updated?.job.status === 'succeeded') await emitJobEvent(deps.webhookQueue, updated.job, 'completed');
}
