/**
 * Headless Chromium for the report tests and the `report.render_4tib_ms` benchmark: the
 * operating system's Chromium (Debian's `chromium` package; `.ci/run` installs it), driven by
 * playwright-core. Nothing here downloads a browser. CCMEM_CHROMIUM names another executable.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { chromium, type BrowserContext, type Page } from 'playwright-core';

const CANDIDATES = ['/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/lib/chromium/chromium', '/usr/bin/google-chrome'];

/** the Chromium executable, or why there is none */
export function findChromium(env: NodeJS.ProcessEnv = process.env): { path: string } | { reason: string } {
  const named = env.CCMEM_CHROMIUM;
  if (named) return existsSync(named) ? { path: named } : { reason: `CCMEM_CHROMIUM=${named} does not exist` };
  for (const p of CANDIDATES) if (existsSync(p)) return { path: p };
  return { reason: `no Chromium found (looked for ${CANDIDATES.join(', ')}; install the OS package "chromium" or set CCMEM_CHROMIUM)` };
}

export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

export interface Browser {
  page: Page;
  context: BrowserContext;
  /** errors the page raised (uncaught exceptions, console.error) */
  errors: string[];
  /** requests the page tried to make to anything but the file itself */
  requests: string[];
  close(): Promise<void>;
}

/** a fresh headless Chromium with an empty profile directory and one page */
export async function openBrowser(executablePath: string, viewport = { width: 1400, height: 900 }): Promise<Browser> {
  const profile = mkdtempSync(join(tmpdir(), 'ccmem-chromium-'));
  const context = await chromium.launchPersistentContext(profile, { executablePath, headless: true, args: CHROMIUM_ARGS, viewport });
  const page = context.pages()[0] ?? (await context.newPage());
  const errors: string[] = [];
  const requests: string[] = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(m.text());
  });
  page.on('request', (r) => {
    if (!r.url().startsWith('file:')) requests.push(r.url());
  });
  return {
    page,
    context,
    errors,
    requests,
    async close() {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/**
 * Open a report file (with an optional #fragment) as a fresh document and wait until it has
 * drawn. (Going from a page to the same file with another fragment would only change the
 * fragment of the loaded document: about:blank in between makes every open a real load.)
 */
export async function openReport(page: Page, file: string, fragment = ''): Promise<void> {
  await page.goto('about:blank');
  await page.goto(pathToFileURL(file).href + fragment);
  await page.waitForSelector('body[data-rendered]');
}
