/**
 * The web page in a real browser (Debian's chromium driven by playwright-core) against the embedded
 * stack with the shipped model: paste the key, create a video, watch it play while the job is
 * still processing, cancel it. A screenshot lands in test/artifacts/page.png.
 */
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import * as path from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { embeddedStackForFile } from '../api/helpers.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const ARTIFACTS = path.join(import.meta.dirname, '..', 'artifacts');

const fixture = embeddedStackForFile('page');
let browser: Browser;
beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`no browser at ${CHROMIUM}: run npm test (it installs Debian's chromium) or set CHROMIUM_PATH`);
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--autoplay-policy=no-user-gesture-required'],
  });
});
afterAll(async () => {
  await browser?.close();
});

async function jobStatus(id: string): Promise<string> {
  const res = await fetch(`${fixture.current.url}/v1/videos/${id}`, { headers: { authorization: `Bearer ${fixture.current.apiKey}` } });
  return ((await res.json()) as { status: string }).status;
}

test('a new user makes a video on the page and watches it play before the job ends, cancels it, and extends another', async () => {
  const page: Page = await browser.newPage({ viewport: { width: 1200, height: 820 } });
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(`${fixture.current.url}/`);
  await page.fill('#key', fixture.current.apiKey);
  await page.click('#save-key');
  await page.fill('#frames', '96');
  await page.fill('#label', '2 balls');
  await page.fill('#seed', '7');
  await page.click('#submit');

  // The new job is listed and selected; its id is in the list.
  const row = page.locator('#jobs tr[data-id]').first();
  await row.waitFor({ timeout: 30_000 });
  const id = (await row.getAttribute('data-id'))!;
  expect(await page.textContent('#job-id')).toBe(id);

  // Frames play while the job is still processing: currentTime moves past the first frames.
  await page.waitForFunction(
    () => (document.getElementById('player') as HTMLVideoElement).currentTime > 0.3 && document.getElementById('job-status')?.textContent === 'processing',
    undefined,
    { timeout: 90_000, polling: 100 },
  );
  expect(await jobStatus(id)).toBe('processing');
  await mkdir(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: path.join(ARTIFACTS, 'page.png') });

  // Cancel from the page: the job ends `canceled`, and the page says so.
  await page.click('#cancel');
  await page.waitForFunction(() => document.getElementById('job-status')?.textContent === 'canceled', undefined, { timeout: 60_000 });
  expect(await jobStatus(id)).toBe('canceled');

  // A short video, then Extend from the page: a new job that continues it, and it finishes.
  await page.fill('#frames', '6');
  await page.click('#submit');
  await page.waitForFunction((old) => document.getElementById('job-id')?.textContent !== old, id, { timeout: 30_000 });
  const short = (await page.textContent('#job-id'))!;
  await page.waitForFunction(() => document.getElementById('job-status')?.textContent === 'succeeded', undefined, { timeout: 90_000 });
  await page.fill('#frames', '3');
  await page.click('#extend');
  await page.waitForFunction((old) => document.getElementById('job-id')?.textContent !== old, short, { timeout: 30_000 });
  const extension = (await page.textContent('#job-id'))!;
  await page.waitForFunction(() => document.getElementById('job-status')?.textContent === 'succeeded', undefined, { timeout: 90_000 });
  const res = await fetch(`${fixture.current.url}/v1/videos/${extension}`, { headers: { authorization: `Bearer ${fixture.current.apiKey}` } });
  expect(((await res.json()) as { parent: unknown }).parent).toEqual({ id: short, frames: 6 });
  expect(errors).toEqual([]);
}, 240_000);
