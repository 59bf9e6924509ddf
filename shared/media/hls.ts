/**
 * Live playback over HLS: each finished chunk becomes one MPEG-TS media segment, and the playlist
 * lists the segments made so far (`EVENT`: it only grows), ending with `#EXT-X-ENDLIST` when the
 * job ends. A segment is encoded from that chunk's frames alone, so its cost does not grow with the
 * video; it starts on an IDR frame (a fresh encoder), decodes on its own, and carries timestamps
 * that continue the previous segment's, so the segments played in order are one video.
 */
import { frameCount, type FrameGeometry } from './raster.js';
import { rawVideoInput, resolveFfmpegPath, runFfmpeg, VIDEO_FPS } from './mp4.js';

export interface TsSegmentOptions {
  /** Index of the segment's first frame in the whole video: sets its timestamps. */
  startFrame: number;
  /** Default VIDEO_FPS, as the MP4. */
  fps?: number;
  /** Default 8, as the MP4. */
  scale?: number;
  /** Default 18, as the MP4. */
  crf?: number;
  ffmpegPath?: string;
  signal?: AbortSignal;
}

/**
 * MPEG-TS (H.264, yuv420p, no B-frames) of `frames` [F, C, H, W], timed from `startFrame`. `frames`
 * may be a promise: ffmpeg then starts at once and takes them when they come (its start-up is off
 * the caller's critical path), and ends if they never do.
 */
export async function encodeTsSegment(frames: Float32Array | Promise<Float32Array>, g: FrameGeometry, opts: TsSegmentOptions): Promise<Buffer> {
  const { fps = VIDEO_FPS, crf = 18, startFrame, signal } = opts;
  if (!Number.isInteger(startFrame) || startFrame < 0) throw new RangeError(`startFrame must be a non-negative integer, got ${startFrame}`);
  const inputOf = (f: Float32Array) => {
    if (frameCount(f, g) === 0) throw new RangeError('encodeTsSegment needs at least one frame');
    return rawVideoInput(f, g, { fps, scale: opts.scale });
  };
  // The arguments do not depend on the frames' values: built from an empty set when they are still to come.
  let input: { args: string[]; frames: Iterable<Uint8Array> | Promise<Iterable<Uint8Array>> };
  if (frames instanceof Float32Array) input = inputOf(frames);
  else {
    const later = frames.then((f) => inputOf(f).frames);
    later.catch(() => {}); // frames that never come may fail before ffmpeg is started; runFfmpeg reports it
    input = { args: rawVideoInput(new Float32Array(0), g, { fps, scale: opts.scale }).args, frames: later };
  }
  const bin = await resolveFfmpegPath(opts.ffmpegPath);
  // prettier-ignore
  const args = [
    ...input.args,
    '-c:v', 'libx264', '-pix_fmt', 'yuv420p', '-crf', String(crf), '-bf', '0',
    // No muxer delay, and the clock of the whole video: segment k starts where k-1 ended.
    '-muxdelay', '0', '-muxpreload', '0', '-output_ts_offset', String(startFrame / fps),
    '-an', '-f', 'mpegts', 'pipe:1',
  ];
  return runFfmpeg(bin, args, input.frames, signal);
}

export interface PlaylistEntry {
  /** Seconds of video in the segment. */
  duration: number;
  uri: string;
}

/** An HLS media playlist of type EVENT; `ended` adds `#EXT-X-ENDLIST` (no segment will follow). */
export function renderPlaylist(entries: readonly PlaylistEntry[], opts: { ended: boolean; targetDuration: number }): string {
  const target = Math.max(1, Math.ceil(opts.targetDuration));
  const lines = ['#EXTM3U', '#EXT-X-VERSION:3', '#EXT-X-PLAYLIST-TYPE:EVENT', `#EXT-X-TARGETDURATION:${target}`, '#EXT-X-MEDIA-SEQUENCE:0'];
  for (const e of entries) lines.push(`#EXTINF:${e.duration.toFixed(3)},`, e.uri);
  if (opts.ended) lines.push('#EXT-X-ENDLIST');
  return lines.join('\n') + '\n';
}

/** Content types of the two HLS file kinds. */
export const HLS_PLAYLIST_TYPE = 'application/vnd.apple.mpegurl';
export const TS_SEGMENT_TYPE = 'video/mp2t';
