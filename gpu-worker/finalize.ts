import { readJob } from '../shared/jobs/job-store.js';
import { endJob, type EndJobDeps } from '../shared/jobs/lifecycle.js';
import { fullVideoKey, previewGifKey, videoKey } from '../shared/keys.js';
import { encodeGif } from '../shared/media/gif.js';
import { encodeMp4 } from '../shared/media/mp4.js';
import { pngsToFrames } from '../shared/media/png.js';
import type { Job } from '../shared/schemas/job.js';
import { verifySegments, type CacheDeps } from './cache-window.js';
import { chunkPngs } from './clean-copy.js';
import { verifyLatentSegments } from './latent-chunk.js';
import { isLatentModel, type ServedModel } from './served-model.js';
import { ChunkFailure } from './errors.js';
import { framesOfChunk, geometry, jobPlan, type JobPlan } from './job-plan.js';

export type FinalizeDeps = Pick<CacheDeps, 'store'> & { model: ServedModel } & EndJobDeps;

/** Encodes output/video.mp4 (H.264) and output/preview.gif from the stored frames; marks the job succeeded (canceled if a cancel came meanwhile). */
export async function finalizeJob(deps: FinalizeDeps, job: Job, plan: JobPlan) {
  const { store } = deps;
  const g = geometry(deps.model.manifest);
  // A missing or damaged frame is rebuilt from its chunk's clean copy, else fails the job at once
  // (a damaged object is permanent: retrying reads the same bytes).
  const chunks = Array.from({ length: plan.chunksTotal }, (_, k) => k);
  const pngs = (await Promise.all(chunks.map((k) => chunkPngs(deps, job, k, framesOfChunk(plan, k))))).flat();
  // Segments a worker kept in memory were never read back: a damaged one is rebuilt now, so the
  // store holds a sound cache when the job ends.
  await (isLatentModel(deps.model) ? verifyLatentSegments({ ...deps, model: deps.model }, job, plan) : verifySegments({ ...deps, model: deps.model }, job, plan));
  const frames = pngsToFrames(pngs, g);
  const video = videoKey(job.tenant, job.id);
  // A continuation also gets the whole video: the frames it continues, then its own.
  const full = job.parent ? fullVideoKey(job.tenant, job.id) : undefined;
  if (full) {
    const before = pngsToFrames(await lineagePngs(deps, job), g);
    const whole = new Float32Array(before.length + frames.length);
    whole.set(before);
    whole.set(frames, before.length);
    await store.put(full, await encodeMp4(whole, g), { contentType: 'video/mp4' });
  }
  const gif = previewGifKey(job.tenant, job.id);
  // ffmpeg encodes in its own process while the GIF is encoded here.
  const mp4 = encodeMp4(frames, g);
  mp4.catch(() => {}); // awaited below; a throwing GIF encode must not leave it unhandled
  const preview = encodeGif(frames, g);
  await Promise.all([
    mp4.then((bytes) => store.put(video, bytes, { contentType: 'video/mp4' })),
    store.put(gif, preview, { contentType: 'image/gif' }),
  ]);
  // A cancel accepted while the last chunk was in flight wins: the job ends canceled, no outputs.
  await endJob(deps, job, (j) => j.cancel_requested ? { status: 'canceled' } : { status: 'succeeded', outputs: { video, gif, ...(full ? { full } : {}) } });
}

/** The PNG frames a continuation stands on, in order: each ancestor's first frames, as far as its child continues it. */
async function lineagePngs(deps: Pick<FinalizeDeps, 'store' | 'model'>, job: Job): Promise<Buffer[]> {
  if (!job.parent) return [];
  const found = await readJob(deps.store, job.tenant, job.parent.id);
  if (!found) throw new ChunkFailure('parent_missing', `video ${job.parent.id}, which this job continues, is gone`);
  const parent = found.job;
  const plan = jobPlan(parent, deps.model.manifest);
  const count = job.parent.frames;
  const chunks = Array.from({ length: Math.ceil(count / plan.chunkFrames) }, (_, k) => k);
  const own = (await Promise.all(chunks.map((k) => chunkPngs(deps, parent, k, framesOfChunk(plan, k))))).flat().slice(0, count);
  return [...(await lineagePngs(deps, parent)), ...own];
}
