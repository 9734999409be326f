// Browser support for the end-to-end tests: Debian's Chromium driven by
// playwright-core, headless, with fake camera and microphone, and WebRTC
// allowed to use loopback addresses (a CI machine may have no other).
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
/** Screenshots land here (gitignored); CI keeps them as artifacts. */
export const ARTIFACTS = join(dirname(dirname(fileURLToPath(import.meta.url))), 'artifacts');
/** Longest wait for one condition in a page. */
export const PAGE_WAIT_MS = 30_000;

export async function launch() {
  mkdirSync(ARTIFACTS, { recursive: true });
  // Playwright passes its own --disable-features; Chromium keeps only the
  // last one, so none is given here.
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--use-fake-device-for-media-stream',
      '--use-fake-ui-for-media-stream',
      '--allow-loopback-in-peer-connection',
    ],
  });
}

/**
 * Opens the demo of `node` in a fresh context (its own sessionStorage) and
 * joins `room` as `name`, with `wsUrls` as the failover list; without
 * `camera`, the page sends its generated canvas stream.
 */
export async function openDemo(browser, node, { room, name, wsUrls, camera = true }) {
  const context = await browser.newContext({ viewport: { width: 1100, height: 720 } });
  // With the permission granted, Chromium offers host candidates (here:
  // loopback) instead of hiding them behind mDNS names; no device is opened.
  await context.grantPermissions(['camera', 'microphone'], { origin: node.http });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  const q = new URLSearchParams({ room, name, join: '1', nodes: (wsUrls ?? [node.url]).join(','), camera: camera ? '1' : '0' });
  await page.goto(`${node.http}/demo?${q}`);
  return { page, context, name, errors };
}

/** Waits until `fn(arg)` is truthy in the page; returns its value. */
export async function inPage(p, fn, arg, what) {
  try {
    const handle = await p.page.waitForFunction(fn, arg, { timeout: PAGE_WAIT_MS, polling: 50 });
    return handle.jsonValue();
  } catch (e) {
    const state = await p.page.evaluate(() => ({
      conn: document.getElementById('conn')?.textContent,
      info: document.getElementById('conninfo')?.textContent,
      log: document.getElementById('log')?.innerText,
    })).catch(() => ({}));
    throw new Error(`${p.name}: waiting for ${what ?? fn}: ${e.message}\npage: ${JSON.stringify(state)}\nerrors: ${p.errors.join('; ')}`);
  }
}

/** Waits until `p` has an open chat channel and a remote video stream from each of `peers`. */
export function connectedTo(p, peers) {
  return inPage(
    p,
    (ps) => {
      const s = window.demo?.seen;
      const playing = (x) => document.querySelector(`figure[data-peer="${x}"] video`)?.videoWidth > 0;
      return s && ps.every((x) => s.open.has(x) && s.streams.has(x) && playing(x));
    },
    peers,
    `chat and video with ${peers.join(', ')}`,
  );
}

/** Waits until `p` received `text` from `from` over the data channel. */
export function received(p, from, text) {
  return inPage(p, ([f, t]) => window.demo.seen.chat.some((m) => m.from === f && m.text === t), [from, text], `"${text}" from ${from}`);
}

export async function screenshot(p, file) {
  await p.page.screenshot({ path: join(ARTIFACTS, file), fullPage: true });
}
