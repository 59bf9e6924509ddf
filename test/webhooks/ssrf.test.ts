import { describe, expect, test } from 'vitest';
import { UnsafeWebhookUrlError, WebhookHostUnresolvedError } from '../../shared/webhooks/errors.js';
import { assertSafeWebhookUrl, embeddedIpv4, forbiddenAddressReason } from '../../shared/webhooks/ssrf.js';
import { signWebhook, verifyWebhook } from '../../shared/webhooks/signature.js';

const strict = { allowLoopback: false };

describe('forbiddenAddressReason', () => {
  test.each([
    '127.0.0.1', '10.1.2.3', '172.16.0.1', '192.168.1.1', '100.64.0.1', '169.254.169.254', '0.0.0.0', '224.0.0.1',
    '::1', '::', 'fe80::1', 'fc00::1', 'fd00:ec2::254', '::ffff:127.0.0.1', '::ffff:7f00:1', '::ffff:a9fe:a9fe',
    '0:0:0:0:0:ffff:10.0.0.1', '::10.0.0.1', '64:ff9b::a00:1', '2002:a00:1::',
  ])('%s is refused', (ip) => {
    expect(forbiddenAddressReason(ip, strict)).not.toBeNull();
  });

  test.each(['93.184.216.34', '8.8.8.8', '2606:2800:220:1:248:1893:25c8:1946', '::ffff:8.8.8.8'])('%s is allowed', (ip) => {
    expect(forbiddenAddressReason(ip, strict)).toBeNull();
  });

  test('loopback only when allowed, and never private ranges', () => {
    expect(forbiddenAddressReason('127.0.0.1', { allowLoopback: true })).toBeNull();
    expect(forbiddenAddressReason('::1', { allowLoopback: true })).toBeNull();
    expect(forbiddenAddressReason('10.0.0.1', { allowLoopback: true })).not.toBeNull();
  });

  test('embeddedIpv4 reads mapped and compatible forms', () => {
    expect(embeddedIpv4('::ffff:a9fe:a9fe')).toBe('169.254.169.254');
    expect(embeddedIpv4('::ffff:1.2.3.4')).toBe('1.2.3.4');
    expect(embeddedIpv4('::1')).toBeNull();
    expect(embeddedIpv4('2001:db8::1')).toBeNull();
  });
});

describe('assertSafeWebhookUrl', () => {
  const aws = { requireHttps: true, allowLoopback: false };
  const publicDns = async () => [{ address: '93.184.216.34', family: 4 }];

  test('https with a public address passes', async () => {
    await expect(assertSafeWebhookUrl('https://example.com/hook', aws, publicDns)).resolves.toBeInstanceOf(URL);
  });
  test('http is refused in the AWS mode', async () => {
    await expect(assertSafeWebhookUrl('http://example.com/hook', aws, publicDns)).rejects.toBeInstanceOf(UnsafeWebhookUrlError);
  });
  test('a name with any private address is refused', async () => {
    const mixed = async () => [{ address: '93.184.216.34', family: 4 }, { address: '10.0.0.5', family: 4 }];
    await expect(assertSafeWebhookUrl('https://evil.example/', aws, mixed)).rejects.toBeInstanceOf(UnsafeWebhookUrlError);
  });
  test('credentials and localhost names are refused', async () => {
    await expect(assertSafeWebhookUrl('https://u:p@example.com/', aws, publicDns)).rejects.toBeInstanceOf(UnsafeWebhookUrlError);
    await expect(assertSafeWebhookUrl('https://localhost/', aws, publicDns)).rejects.toBeInstanceOf(UnsafeWebhookUrlError);
  });
  test('a name that does not resolve is its own error', async () => {
    const none = async () => {
      throw Object.assign(new Error('ENOTFOUND'), { code: 'ENOTFOUND' });
    };
    await expect(assertSafeWebhookUrl('https://nx.example/', aws, none)).rejects.toBeInstanceOf(WebhookHostUnresolvedError);
  });
});

test('signWebhook matches the Standard Webhooks reference vector', () => {
  // From the standard-webhooks spec test suite.
  const secret = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
  const id = 'msg_p5jXN8AQM9LWM0D4loKWxJek';
  const ts = 1614265330;
  const body = '{"test": 2432232314}';
  expect(signWebhook(secret, id, ts, body)).toBe('v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=');
  expect(verifyWebhook(secret, { id, timestamp: String(ts), signature: `v1,bad v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=` }, body, { nowSec: ts })).toBe(true);
  expect(verifyWebhook(secret, { id, timestamp: String(ts), signature: 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=' }, body, { nowSec: ts + 1000 })).toBe(false);
});
