import { createHash } from 'node:crypto';

/** What a chunk blob says it holds: checked on every read, so another chunk's blob is never used. */
export interface ChunkBlobMeta {
  job: string;
  chunk: number;
  frames: number;
}

/**
 * A chunk's lossless data beside its frames (the clean copy, a latent model's latents):
 * 8-byte magic, header length (u32 LE), JSON header, SHA-256 of header and payload, payload.
 */
export function sealChunkBlob(magic: string, meta: ChunkBlobMeta & { floats: number }, payload: Buffer): Buffer {
  const header = Buffer.from(JSON.stringify({ job: meta.job, chunk: meta.chunk, frames: meta.frames, floats: meta.floats }));
  const len = Buffer.alloc(4);
  len.writeUInt32LE(header.length);
  const digest = createHash('sha256').update(header).update(payload).digest();
  return Buffer.concat([Buffer.from(magic, 'latin1'), len, header, digest, payload]);
}

/** The payload of a blob that is intact, of `payloadBytes` bytes, and the one expected; else null (damaged or another chunk's). */
export function openChunkBlob(bytes: Buffer, magic: string, expect: ChunkBlobMeta, payloadBytes: number): Buffer | null {
  if (bytes.length < 12 || bytes.toString('latin1', 0, 8) !== magic) return null;
  const headerLen = bytes.readUInt32LE(8);
  const payloadAt = 12 + headerLen + 32;
  if (payloadAt > bytes.length || bytes.length - payloadAt !== payloadBytes) return null;
  const header = bytes.subarray(12, 12 + headerLen);
  const payload = bytes.subarray(payloadAt);
  const digest = createHash('sha256').update(header).update(payload).digest();
  if (!digest.equals(bytes.subarray(12 + headerLen, payloadAt))) return null;
  let meta: { job?: unknown; chunk?: unknown; frames?: unknown };
  try { meta = JSON.parse(header.toString('utf8')); } catch { return null; }
  if (meta.job !== expect.job || meta.chunk !== expect.chunk || meta.frames !== expect.frames) return null;
  return payload;
}
