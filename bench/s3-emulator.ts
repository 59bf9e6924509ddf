/**
 * s3rver on loopback in its own process (its request handling must not share the bench's event
 * loop), for `npm run bench:scale`. Prints `{"port": N}` once listening; exits when stdin closes.
 */
import { promises as fs } from 'node:fs';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import S3rver from 's3rver';

const bucket = process.argv[2] ?? 'bench';
const directory = await fs.mkdtemp(path.join(os.tmpdir(), 'ca2vdm-s3rver-'));
const server = new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory, configureBuckets: [{ name: bucket }] });
const { port } = (await server.run()) as AddressInfo;
process.stdout.write(JSON.stringify({ port }) + '\n');
const stop = async () => {
  await server.close().catch(() => {});
  await fs.rm(directory, { recursive: true, force: true });
  process.exit(0);
};
process.stdin.on('end', stop);
process.stdin.on('close', stop);
process.stdin.resume();
process.once('SIGTERM', stop);
