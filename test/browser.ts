// The web app in real Chromium (Debian's, driven by playwright-core), for the tests of its pages.
// Screenshots go to test/screenshots/ (not committed; README's come from here).
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import tap, { type Test } from 'tap';
import { createApp } from '../dist/src/app/app.js';
import { ROOT } from './helpers.js';

export const SHOTS = join(ROOT, 'test', 'screenshots');

// Flags from the machine notes: no background networking on a closed network.
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

let browser: Promise<Browser> | undefined;

/**
 * One Chromium for a file's tests, closed when the file ends: a launch is seconds of a test on a
 * loaded machine, and each test's page has a context of its own (cookies, storage, cache), as a
 * browser of its own had.
 */
function fileBrowser(): Promise<Browser> {
  browser ??= chromium.launch({ executablePath: '/usr/bin/chromium', args: CHROMIUM_ARGS }).then((launched) => {
    tap.teardown(() => launched.close());
    return launched;
  });
  return browser;
}

/** The app in front of `servers`, and a Chromium page on it; both closed at the test's end. */
export async function openApp(
  t: Test,
  servers: Parameters<typeof createApp>[0],
  viewport?: { width: number; height: number },
): Promise<{ appUrl: string; page: Page }> {
  const app = createApp(servers);
  const appUrl = await app.listen({ port: 0, host: '127.0.0.1' });
  t.teardown(() => app.close());
  const context = await (await fileBrowser()).newContext(viewport ? { viewport } : {});
  t.teardown(() => context.close());
  return { appUrl, page: await context.newPage() };
}
