/**
 * `npm start`: the embedded stack as a server for curl and the CLI. Environment: PORT (8080),
 * DATA_DIR (.data), WORKERS (1), ORT_PROVIDER (cpu), ALLOW_LOOPBACK_WEBHOOKS (off),
 * VISIBILITY_SEC (60: a killed worker's chunk is taken again after this), STALL_AFTER_SEC (600:
 * the reaper re-queues a job with no progress for this long), PUBLIC_API_URL (links in responses;
 * default the listening address, never the request's Host header).
 */
import { embeddedOptionsFromEnv, startEmbeddedStack } from './stack.js';

const stack = await startEmbeddedStack(embeddedOptionsFromEnv(process.env));
const m = stack.model.manifest;
process.stdout.write(`
ca2vdm embedded stack
  API       ${stack.url}
  API key   ${stack.apiKey}   (tenant ${stack.tenant}${stack.keyCreated ? ', created now' : ''}; also in ${process.env.DATA_DIR ?? '.data'}/api-key)
  model     ${m.name}: ${m.frame.width}x${m.frame.height}, ${m.chunk_frames} frames per chunk, labels ${JSON.stringify(m.labels)} (${stack.model.provider})

${m.format === 2 ? `  a latent model: every request gives 1 to ${m.p_max} starting images (init_frames, ${m.frame.width}x${m.frame.height} PNG)
  curl -X POST ${stack.url}/v1/videos -H "Authorization: Bearer ${stack.apiKey}" \\
       -H 'content-type: application/json' -d '{"frames": 32, "seed": 1, "init_frames": ["<base64 PNG>"]}'
` : `  curl -X POST ${stack.url}/v1/videos -H "Authorization: Bearer ${stack.apiKey}" \\
       -H 'content-type: application/json' -d '{"frames": 32, "label": "2 balls", "seed": 1}'
  npx ca2vdm generate --frames 32 --label "2 balls" --out video.mp4
`}
Ctrl-C stops (the chunk in flight finishes first).
`);
let stopping = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (stopping) return;
    stopping = true;
    process.stdout.write('stopping...\n');
    void stack.close().then(() => process.exit(0));
  });
}
