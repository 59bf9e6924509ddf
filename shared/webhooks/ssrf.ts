import { lookup as dnsLookup } from 'node:dns/promises';
import { BlockList, isIP } from 'node:net';
import { UnsafeWebhookUrlError, WebhookHostUnresolvedError } from './errors.js';

/** What a webhook URL may be: https only in the AWS mode; loopback only where the embedded mode allows it. */
export interface WebhookUrlPolicy {
  requireHttps: boolean;
  allowLoopback: boolean;
}

/** Address ranges a webhook must never reach: private, shared, link-local (cloud metadata), reserved. */
const forbidden = new BlockList();
for (const [net, bits] of [
  ['0.0.0.0', 8], // "this network"
  ['10.0.0.0', 8],
  ['100.64.0.0', 10], // CGNAT
  ['169.254.0.0', 16], // link-local, incl. the 169.254.169.254 metadata endpoint
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.0.2.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['198.51.100.0', 24],
  ['203.0.113.0', 24],
  ['224.0.0.0', 4], // multicast
  ['240.0.0.0', 4], // reserved + broadcast
] as const) {
  forbidden.addSubnet(net, bits, 'ipv4');
}
for (const [net, bits] of [
  ['::', 128],
  ['64:ff9b::', 96], // NAT64: can embed any IPv4 address
  ['64:ff9b:1::', 48],
  ['100::', 64], // discard
  ['2001:db8::', 32],
  ['2002::', 16], // 6to4: can embed any IPv4 address
  ['fc00::', 7], // unique local, incl. the fd00:ec2::254 metadata endpoint
  ['fe80::', 10], // link-local
  ['ff00::', 8], // multicast
] as const) {
  forbidden.addSubnet(net, bits, 'ipv6');
}
const loopback = new BlockList();
loopback.addSubnet('127.0.0.0', 8, 'ipv4');
loopback.addAddress('::1', 'ipv6');

/** The 8 groups of an IPv6 address (dotted IPv4 tail included), or null if it is not one. */
function ipv6Groups(ip: string): number[] | null {
  if (isIP(ip) !== 6) return null;
  let s = ip.toLowerCase();
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(s);
  if (dotted) {
    const [a, b, c, d] = dotted[1].split('.').map(Number);
    s = s.slice(0, -dotted[1].length) + `${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, tail] = s.includes('::') ? s.split('::') : [s, undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const zeros = tail === undefined ? [] : new Array(8 - h.length - t.length).fill('0');
  return [...h, ...zeros, ...t].map((g) => parseInt(g, 16));
}

/** The IPv4 address inside an IPv4-mapped or -compatible IPv6 address (`::ffff:7f00:1`, `::127.0.0.1`), else null. */
export function embeddedIpv4(ip: string): string | null {
  const g = ipv6Groups(ip);
  if (!g || g.slice(0, 5).some((x) => x !== 0)) return null;
  if (g[5] !== 0xffff && g[5] !== 0) return null;
  if (g[5] === 0 && g[6] === 0) return null; // :: and ::1 are IPv6's own
  return `${g[6] >> 8}.${g[6] & 255}.${g[7] >> 8}.${g[7] & 255}`;
}

/** Why `ip` may not be contacted under `policy`, or null if it may. */
export function forbiddenAddressReason(ip: string, policy: Pick<WebhookUrlPolicy, 'allowLoopback'>): string | null {
  const bare = ip.replace(/^\[|\]$/g, '').replace(/%.*$/, '');
  const family = isIP(bare);
  if (family === 0) return `${ip} is not an IP address`;
  const v4 = family === 6 ? embeddedIpv4(bare) : bare;
  const [addr, type] = v4 ? [v4, 'ipv4' as const] : [bare, 'ipv6' as const];
  if (loopback.check(addr, type)) return policy.allowLoopback ? null : `${ip} is a loopback address`;
  if (forbidden.check(addr, type)) return `${ip} is a private, link-local, metadata or reserved address`;
  return null;
}

export type Resolver = (host: string) => Promise<{ address: string; family: number }[]>;

export const systemResolver: Resolver = (host) => dnsLookup(host, { all: true, verbatim: true });

/**
 * Checks the URL's form, then resolves its host and refuses it if ANY address is forbidden (an
 * attacker controls which one a client picks). Called at submit time and again at delivery time.
 */
export async function assertSafeWebhookUrl(
  raw: string,
  policy: WebhookUrlPolicy,
  resolve: Resolver = systemResolver,
): Promise<URL> {
  const url = parseWebhookUrl(raw, policy);
  const host = url.hostname.replace(/^\[|\]$/g, '');
  let addresses: string[];
  if (isIP(host)) addresses = [host];
  else {
    try {
      addresses = (await resolve(host)).map((a) => a.address);
    } catch (cause) {
      throw new WebhookHostUnresolvedError(host, { cause });
    }
    if (addresses.length === 0) throw new WebhookHostUnresolvedError(host);
  }
  for (const a of addresses) {
    const reason = forbiddenAddressReason(a, policy);
    if (reason) throw new UnsafeWebhookUrlError(raw, reason);
  }
  return url;
}

/** The syntactic part of the check (no DNS): scheme, no credentials, a host, sane length. */
export function parseWebhookUrl(raw: string, policy: WebhookUrlPolicy): URL {
  if (raw.length > 2048) throw new UnsafeWebhookUrlError(raw.slice(0, 64), 'longer than 2048 characters');
  let url: URL;
  try {
    url = new URL(raw);
  } catch (cause) {
    throw new UnsafeWebhookUrlError(raw, 'not a valid URL', { cause });
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new UnsafeWebhookUrlError(raw, 'scheme must be https');
  if (policy.requireHttps && url.protocol !== 'https:') throw new UnsafeWebhookUrlError(raw, 'scheme must be https');
  if (url.username || url.password) throw new UnsafeWebhookUrlError(raw, 'credentials in the URL are not allowed');
  if (!url.hostname) throw new UnsafeWebhookUrlError(raw, 'no host');
  if (/^localhost$|\.localhost$/i.test(url.hostname) && !policy.allowLoopback) {
    throw new UnsafeWebhookUrlError(raw, `${url.hostname} is a loopback name`);
  }
  return url;
}
