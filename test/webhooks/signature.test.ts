import { expect, test } from 'vitest';
import { generateWebhookSecret, signWebhook, verifyWebhook } from '../../shared/webhooks/signature.js';

// The Standard Webhooks spec's reference vector (also checked in ssrf.test.ts).
const secret = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
const id = 'msg_p5jXN8AQM9LWM0D4loKWxJek';
const ts = 1614265330;
const body = '{"test": 2432232314}';
const mac = 'g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=';
const verify = (signature: string, nowSec = ts, timestamp = String(ts)) => verifyWebhook(secret, { id, timestamp, signature }, body, { nowSec });

test('verifies a delivery signed just now against the real clock (no nowSec given)', () => {
  const key = generateWebhookSecret();
  const now = Math.floor(Date.now() / 1000);
  const signature = signWebhook(key, id, now, body);
  expect(verifyWebhook(key, { id, timestamp: String(now), signature }, body)).toBe(true);
  expect(verifyWebhook(generateWebhookSecret(), { id, timestamp: String(now), signature }, body)).toBe(false);
});

test('accepts a timestamp exactly at the tolerance, refuses one a second past it, either side', () => {
  expect(verify(`v1,${mac}`, ts + 300)).toBe(true);
  expect(verify(`v1,${mac}`, ts - 300)).toBe(true);
  expect(verify(`v1,${mac}`, ts + 301)).toBe(false);
  expect(verify(`v1,${mac}`, ts - 301)).toBe(false);
  expect(verify(`v1,${mac}`, ts, 'soon')).toBe(false);
});

test('only v1 signatures count: the right MAC under another version tag is refused', () => {
  expect(verify(`v2,${mac}`)).toBe(false);
  expect(verify(`v1a${mac}`)).toBe(false);
  expect(verify(`v0,${mac} v2,${mac}`)).toBe(false);
  expect(verify(`v2,${mac} v1,${mac}`)).toBe(true);
});

test('a wrong v1 MAC, a truncated one, or one for another body is refused', () => {
  expect(verify('v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=')).toBe(false);
  expect(verify(`v1,${mac.slice(0, 20)}`)).toBe(false);
  expect(verifyWebhook(secret, { id, timestamp: String(ts), signature: `v1,${mac}` }, `${body} `, { nowSec: ts })).toBe(false);
  expect(verifyWebhook(secret, { id: `${id}x`, timestamp: String(ts), signature: `v1,${mac}` }, body, { nowSec: ts })).toBe(false);
});

test('a secret without the whsec_ prefix is the same key', () => {
  expect(signWebhook(secret.slice('whsec_'.length), id, ts, body)).toBe(`v1,${mac}`);
  expect(generateWebhookSecret()).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
});
