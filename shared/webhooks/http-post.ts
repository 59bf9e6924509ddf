import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import * as http from 'node:http';
import * as https from 'node:https';
import { isIP, type LookupFunction } from 'node:net';
import { UnsafeWebhookUrlError } from './errors.js';
import { forbiddenAddressReason, type WebhookUrlPolicy } from './ssrf.js';

export interface PostResult {
  status: number;
}

export type WebhookPoster = (
  url: URL,
  headers: Record<string, string>,
  body: string,
  opts: { timeoutMs: number; policy: WebhookUrlPolicy },
) => Promise<PostResult>;

/**
 * A DNS lookup that refuses forbidden addresses. Used as the socket's own lookup, so the address
 * that was checked is the address that is connected to (no rebinding between check and connect).
 */
function guardedLookup(policy: WebhookUrlPolicy): LookupFunction {
  return (hostname, options, callback) => {
    dnsLookup(hostname, { all: true, verbatim: true, family: options.family as number | undefined }, (err, addresses) => {
      if (err) return callback(err, '', 0);
      const list = addresses as LookupAddress[];
      for (const a of list) {
        const reason = forbiddenAddressReason(a.address, policy);
        if (reason) return callback(new UnsafeWebhookUrlError(hostname, reason) as NodeJS.ErrnoException, '', 0);
      }
      if (list.length === 0) return callback(Object.assign(new Error(`no address for ${hostname}`), { code: 'ENOTFOUND' }), '', 0);
      if ((options as { all?: boolean }).all) return (callback as unknown as (e: null, a: LookupAddress[]) => void)(null, list);
      callback(null, list[0].address, list[0].family);
    });
  };
}

/**
 * POSTs one delivery with node:http(s): no redirects are followed (a 3xx is a failed try), the
 * response body is drained and ignored, and the whole exchange is bounded by `timeoutMs`.
 */
export const postWebhook: WebhookPoster = (url, headers, body, { timeoutMs, policy }) => {
  const host = url.hostname.replace(/^\[|\]$/g, '');
  if (isIP(host)) {
    const reason = forbiddenAddressReason(host, policy);
    if (reason) return Promise.reject(new UnsafeWebhookUrlError(url.href, reason));
  }
  const mod = url.protocol === 'https:' ? https : http;
  return new Promise<PostResult>((resolve, reject) => {
    const req = mod.request(
      url,
      {
        method: 'POST',
        headers: { ...headers, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
        lookup: guardedLookup(policy),
        signal: AbortSignal.timeout(timeoutMs),
        agent: false,
      },
      (res) => {
        res.on('data', () => {});
        res.on('end', () => resolve({ status: res.statusCode ?? 0 }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
};
