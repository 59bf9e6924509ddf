// A loopback S3 for the adapter's conditional writes, which s3rver ignores: path-style
// GET (ranged too)/HEAD/PUT/DELETE of objects and ListObjectsV2, with PutObject's If-None-Match: * and If-Match
// checked and applied in one synchronous step (as S3 does per key), so racing requests see real
// compare-and-swap. No auth, no versioning, no multipart; ETag is the quoted MD5 like S3's.
import { createHash } from 'node:crypto';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { S3Client } from '@aws-sdk/client-s3';

interface Obj { body: Buffer; etag: string; contentType?: string }

export interface S3Shim {
  client: S3Client;
  bucket: string;
  /** Requests answered, by S3 operation, e.g. `PutObject 412`. */
  counts: Map<string, number>;
  close(): Promise<void>;
}

const xml = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

export async function startS3Shim(bucket = 'shim-bucket'): Promise<S3Shim> {
  const objects = new Map<string, Obj>();
  const counts = new Map<string, number>();
  const count = (op: string, status: number) => counts.set(`${op} ${status}`, (counts.get(`${op} ${status}`) ?? 0) + 1);

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://shim');
      const [, b, ...rest] = url.pathname.split('/');
      const key = decodeURIComponent(rest.join('/'));
      const fail = (op: string, status: number, code: string) => {
        count(op, status);
        res.writeHead(status, { 'content-type': 'application/xml' });
        res.end(req.method === 'HEAD' ? undefined : `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message>${code}</Message></Error>`);
      };
      if (b !== bucket) return fail('Any', 404, 'NoSuchBucket');
      if (req.method === 'GET' && key === '' && url.searchParams.get('list-type') === '2') {
        const prefix = url.searchParams.get('prefix') ?? '';
        const keys = [...objects.keys()].filter((k) => k.startsWith(prefix)).sort();
        count('ListObjectsV2', 200);
        res.writeHead(200, { 'content-type': 'application/xml' });
        return res.end(`<?xml version="1.0" encoding="UTF-8"?><ListBucketResult><Name>${bucket}</Name><Prefix>${xml(prefix)}</Prefix>` +
          `<KeyCount>${keys.length}</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated>` +
          keys.map((k) => `<Contents><Key>${xml(k)}</Key><ETag>${xml(objects.get(k)!.etag)}</ETag><Size>${objects.get(k)!.body.length}</Size></Contents>`).join('') +
          '</ListBucketResult>');
      }
      if (req.method === 'PUT') {
        const body = decodeBody(req, Buffer.concat(chunks));
        const current = objects.get(key);
        const ifNoneMatch = req.headers['if-none-match'];
        const ifMatch = req.headers['if-match'];
        // Check and write in this one synchronous step: no other request runs in between.
        if (ifNoneMatch === '*' && current) return fail('PutObject', 412, 'PreconditionFailed');
        if (ifMatch !== undefined && !current) return fail('PutObject', 404, 'NoSuchKey');
        if (ifMatch !== undefined && current!.etag !== ifMatch) return fail('PutObject', 412, 'PreconditionFailed');
        const etag = `"${createHash('md5').update(body).digest('hex')}"`;
        objects.set(key, { body, etag, contentType: req.headers['content-type'] });
        count('PutObject', 200);
        res.writeHead(200, { etag });
        return res.end();
      }
      if (req.method === 'GET' || req.method === 'HEAD') {
        const op = req.method === 'GET' ? 'GetObject' : 'HeadObject';
        const obj = objects.get(key);
        if (!obj) return fail(op, 404, req.method === 'GET' ? 'NoSuchKey' : 'NotFound');
        if (req.headers['if-match'] !== undefined && req.headers['if-match'] !== obj.etag) return fail(op, 412, 'PreconditionFailed');
        const type = obj.contentType ? { 'content-type': obj.contentType } : {};
        // A ranged GET (`bytes=first-last`, last clipped to the object): 206 with Content-Range; 416 past the end.
        const range = req.method === 'GET' ? /^bytes=(\d+)-(\d*)$/.exec(String(req.headers.range ?? '')) : null;
        if (range) {
          const first = Number(range[1]);
          if (first >= obj.body.length) return fail(op, 416, 'InvalidRange');
          const last = Math.min(obj.body.length - 1, range[2] === '' ? Infinity : Number(range[2]));
          count(op, 206);
          res.writeHead(206, { etag: obj.etag, 'content-length': last - first + 1, 'content-range': `bytes ${first}-${last}/${obj.body.length}`, ...type });
          return res.end(obj.body.subarray(first, last + 1));
        }
        count(op, 200);
        res.writeHead(200, { etag: obj.etag, 'content-length': obj.body.length, ...type });
        return res.end(req.method === 'GET' ? obj.body : undefined);
      }
      if (req.method === 'DELETE') {
        objects.delete(key);
        count('DeleteObject', 204);
        res.writeHead(204);
        return res.end();
      }
      return fail('Any', 405, 'MethodNotAllowed');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  const client = new S3Client({
    region: 'us-east-1',
    endpoint: `http://127.0.0.1:${port}`,
    forcePathStyle: true,
    credentials: { accessKeyId: 'SHIM', secretAccessKey: 'SHIM' },
  });
  return {
    client,
    bucket,
    counts,
    async close() {
      client.destroy();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** The object bytes of a PUT: as sent, or unwrapped from aws-chunked framing (`size;ext\r\ndata\r\n`..., trailers). */
function decodeBody(req: http.IncomingMessage, raw: Buffer): Buffer {
  if (!String(req.headers['content-encoding'] ?? '').includes('aws-chunked')) return raw;
  const parts: Buffer[] = [];
  let o = 0;
  for (;;) {
    const eol = raw.indexOf('\r\n', o);
    const size = parseInt(raw.toString('latin1', o, eol).split(';')[0], 16);
    if (!size) return Buffer.concat(parts);
    parts.push(raw.subarray(eol + 2, eol + 2 + size));
    o = eol + 2 + size + 2;
  }
}
