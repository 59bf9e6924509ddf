// The SSRF guard's edges: address forms (IPv6 shorthand, zone ids, brackets, upper case, embedded
// IPv4), what is and is not an IP, and every URL rule with the reason it gives.
import { describe, expect, test } from 'vitest';
import { UnsafeWebhookUrlError, WebhookHostUnresolvedError } from '../../shared/webhooks/errors.js';
import { assertSafeWebhookUrl, embeddedIpv4, forbiddenAddressReason, parseWebhookUrl, type Resolver } from '../../shared/webhooks/ssrf.js';

const strict = { allowLoopback: false };
const aws = { requireHttps: true, allowLoopback: false };
const embedded = { requireHttps: false, allowLoopback: true };
const publicDns: Resolver = async () => [{ address: '93.184.216.34', family: 4 }];
const refusal = (p: Promise<unknown> | (() => unknown)) =>
  (typeof p === 'function' ? Promise.resolve().then(p) : p).then(() => undefined, (e: unknown) => e as UnsafeWebhookUrlError);

describe('embeddedIpv4', () => {
  test.each([
    ['::ffff:7f00:1', '127.0.0.1'],
    ['::FFFF:7F00:1', '127.0.0.1'],
    ['0:0:0:0:0:ffff:a00:1', '10.0.0.1'],
    ['::10.1.2.3', '10.1.2.3'],
    ['::ffff:10.0.0.1', '10.0.0.1'],
    ['::ffff:0.0.1.2', '0.0.1.2'],
    ['::ffff:192.168.100.200', '192.168.100.200'],
    ['0:0::ffff:a00:1', '10.0.0.1'],
  ])('%s holds %s', (ip, v4) => expect(embeddedIpv4(ip)).toBe(v4));

  test.each(['::', '::1', '::0.0.1.2', '1::ffff:a00:1', '0:0:0:0:1:ffff:a00:1', '::fffe:a00:1', '2001:db8::10.0.0.1', '10.0.0.1', 'nonsense', '1:2:3:4:5:6:7:8', '::ffff:zz:1'])(
    '%s holds none', (ip) => expect(embeddedIpv4(ip)).toBeNull());
});

describe('forbiddenAddressReason', () => {
  test('reads bracketed and zoned addresses as the address itself', () => {
    expect(forbiddenAddressReason('[::1]', strict)).toBe('[::1] is a loopback address');
    expect(forbiddenAddressReason('fe80::1%eth0', strict)).toMatch(/private, link-local, metadata or reserved/);
    expect(forbiddenAddressReason('[2606:2800:220:1::1]', strict)).toBeNull();
  });

  test('strips brackets only at the ends: one inside leaves no IP address', () => {
    expect(forbiddenAddressReason('8.8.[8.8', strict)).toBe('8.8.[8.8 is not an IP address');
    expect(forbiddenAddressReason('8.8.]8.8', strict)).toBe('8.8.]8.8 is not an IP address');
  });

  test('says what is wrong', () => {
    expect(forbiddenAddressReason('example.com', strict)).toBe('example.com is not an IP address');
    expect(forbiddenAddressReason('127.0.0.1', strict)).toBe('127.0.0.1 is a loopback address');
    expect(forbiddenAddressReason('10.0.0.1', strict)).toBe('10.0.0.1 is a private, link-local, metadata or reserved address');
    expect(forbiddenAddressReason('::ffff:7f00:1', strict)).toBe('::ffff:7f00:1 is a loopback address');
    expect(forbiddenAddressReason('::ffff:8.8.8.8', strict)).toBeNull();
  });

  test('a mapped loopback is allowed where loopback is', () => {
    expect(forbiddenAddressReason('::ffff:127.0.0.1', { allowLoopback: true })).toBeNull();
  });
});

describe('parseWebhookUrl', () => {
  test.each([
    ['ftp://example.com/x', embedded, 'scheme must be https'],
    ['http://example.com/x', aws, 'scheme must be https'],
    ['not a url', embedded, 'not a valid URL'],
    ['https://user@example.com/', embedded, 'credentials in the URL are not allowed'],
    ['https://:secret@example.com/', embedded, 'credentials in the URL are not allowed'],
    ['https://localhost/', aws, 'localhost is a loopback name'],
    ['https://api.localhost/', aws, 'api.localhost is a loopback name'],
    ['https://LOCALHOST/', aws, 'localhost is a loopback name'],
  ])('%s is refused: %s', async (url, policy, reason) => {
    const err = await refusal(() => parseWebhookUrl(url, policy));
    expect(err).toBeInstanceOf(UnsafeWebhookUrlError);
    expect(err!.reason).toBe(reason);
  });

  test('keeps the cause of an unparsable URL', async () => {
    expect((await refusal(() => parseWebhookUrl('http://', embedded)))!.cause).toBeInstanceOf(TypeError);
  });

  test('2048 characters pass, 2049 do not (and the error holds only the start of it)', async () => {
    const base = 'https://example.com/';
    expect(parseWebhookUrl(base + 'a'.repeat(2048 - base.length), aws)).toBeInstanceOf(URL);
    const err = await refusal(() => parseWebhookUrl(base + 'a'.repeat(2049 - base.length), aws));
    expect(err!.reason).toBe('longer than 2048 characters');
    expect(err!.url).toHaveLength(64);
  });

  test('names that only contain localhost are fine; loopback names are fine where loopback is', () => {
    expect(parseWebhookUrl('https://localhost.example.com/', aws).hostname).toBe('localhost.example.com');
    expect(parseWebhookUrl('https://mylocalhost/', aws).hostname).toBe('mylocalhost');
    expect(parseWebhookUrl('https://api.localhost.example.com/', aws).hostname).toBe('api.localhost.example.com');
    expect(parseWebhookUrl('http://localhost:8080/', embedded).port).toBe('8080');
    expect(parseWebhookUrl('http://example.com/', embedded).protocol).toBe('http:');
  });
});

describe('assertSafeWebhookUrl', () => {
  test('an IP literal is checked as it is, without DNS', async () => {
    const noDns: Resolver = async () => { throw new Error('DNS must not be asked'); };
    await expect(assertSafeWebhookUrl('https://93.184.216.34/x', aws, noDns)).resolves.toBeInstanceOf(URL);
    await expect(assertSafeWebhookUrl('https://[2606:2800:220:1::1]/x', aws, noDns)).resolves.toBeInstanceOf(URL);
    const err = await refusal(assertSafeWebhookUrl('https://[::1]/x', aws, noDns));
    expect(err!.reason).toBe('::1 is a loopback address');
  });

  test('a name that resolves to nothing, or fails to resolve, is unresolved (with the cause)', async () => {
    await expect(assertSafeWebhookUrl('https://empty.example/', aws, async () => [])).rejects.toBeInstanceOf(WebhookHostUnresolvedError);
    const cause = new Error('ENOTFOUND');
    const err = await assertSafeWebhookUrl('https://nx.example/', aws, async () => { throw cause; }).then(() => undefined, (e: unknown) => e as Error);
    expect(err).toBeInstanceOf(WebhookHostUnresolvedError);
    expect(err!.cause).toBe(cause);
  });
});
