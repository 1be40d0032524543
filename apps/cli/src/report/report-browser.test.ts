/**
 * The report pages in a real browser: the operating system's headless Chromium driven by
 * playwright-core (test-support/browser.ts). Without Chromium these tests are skipped, loudly;
 * under CI=true (where .ci/run installs it first) a missing Chromium is a failure.
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildDiffReport, buildExploreReport, buildRunReport, createModelTarget, explore, loadBuiltinExploration, loadScenarioFile, parseScenario, reportToJson } from '@ccmem/scenario';
import { profileByName } from '@ccmem/core';
import { findChromium, openBrowser, openReport, type Browser } from '../../test-support/browser.js';
import { writeReport } from '../commands/report.js';
import { renderReportHtml, scriptJson } from './html.js';

const ROOT = new URL('../../../../', import.meta.url).pathname;
const found = findChromium();
const chromium = 'path' in found ? found.path : null;
const missing = 'reason' in found ? found.reason : '';
if (!chromium) console.warn(`report-browser.test.ts: ${missing}: the browser tests of ccmem report are SKIPPED`);

it('headless Chromium is there where CI=true says the browser tests must run', () => {
  if (process.env.CI === 'true') expect(chromium, `CI=true but ${missing}`).not.toBeNull();
});

it('the page embeds its data safely and names no other resource', () => {
  const html = renderReportHtml(buildRunReport(parseScenario('name: "</script><b>x"\nvm: { type: default }\nsteps:\n  - create_vcpu: { id: 0 }\n', 'x.yaml')));
  expect(html).not.toMatch(/<\/script><b>/);
  expect(scriptJson({ a: '</script>\u2028' })).toBe('{"a":"\\u003c/script>\\u2028"}');
  expect(html).not.toMatch(/\b(src|href)=["']?(https?:|\/\/)/);
  expect(html).toContain("default-src 'none'");
});

describe.skipIf(!chromium)(`ccmem report in headless Chromium (${chromium ?? 'SKIPPED: no Chromium'})`, () => {
  const dir = mkdtempSync(join(tmpdir(), 'ccmem-report-'));
  const files = { psc: join(dir, 'psc.html'), rmp: join(dir, 'rmp.html'), fvc: join(dir, 'fvc.html'), big: join(dir, '4tib.html'), diff: join(dir, 'diff.html') };
  let b: Browser;

  beforeAll(async () => {
    writeReport(files.psc, buildRunReport(loadScenarioFile(`${ROOT}packages/scenario/scenarios/snp/psc-shared-to-private.yaml`)));
    writeReport(files.big, buildRunReport(loadScenarioFile(`${ROOT}apps/cli/test-support/guest-4tib.yaml`)));
    const rmp = loadBuiltinExploration('snp-rmp-timing');
    if (!rmp.ok) throw new Error('snp-rmp-timing');
    const { scenario: rs, options: ro } = rmp.exploration;
    writeReport(files.rmp, buildExploreReport(rs, ro, reportToJson(explore(rs, ro)), { name: 'snp-rmp-timing' }));
    const fvc = loadBuiltinExploration('fault-vs-conversion');
    if (!fvc.ok) throw new Error('fault-vs-conversion');
    const fo = { ...fvc.exploration.options, faultInjection: { skipRetryCheck: true } };
    writeReport(files.fvc, buildExploreReport(fvc.exploration.scenario, fo, reportToJson(explore(fvc.exploration.scenario, fo)), { name: 'fault-vs-conversion' }));
    const text = readFileSync(`${ROOT}packages/scenario/scenarios/snp/psc-user-errors-upstream.yaml`, 'utf8').replace(', profile: upstream', '');
    writeReport(files.diff, buildDiffReport(parseScenario(text, 'psc.yaml'), createModelTarget({ hostProfile: profileByName('linux-6.18')! }), createModelTarget()).data);
    b = await openBrowser(chromium!);
  });
  afterAll(async () => {
    await b?.close();
  });

  const rmpLabels = (step: string) => b.page.locator(`[data-slot="0:0"] [data-layer="${step}"] .run`).evaluateAll((els) => els.map((e) => e.getAttribute('data-label')));

  it('an SNP conversion: selecting the step after PVALIDATE shows the page assigned in the RMP lane', async () => {
    await openReport(b.page, files.psc);
    // before the conversion the RMP lane is empty
    await b.page.click('#step-7');
    expect(await b.page.getAttribute('body', 'data-step')).toBe('7');
    expect(await rmpLabels('rmp')).toEqual([]);
    // step 10 (PVALIDATE): the frame is assigned to ASID 1 and validated
    await b.page.click('#step-10');
    expect(await rmpLabels('rmp')).toEqual(['assigned asid 1 4K validated']);
    expect(await rmpLabels('attributes')).toContain('private');
    // the change highlight marks the page PVALIDATE changed, and the URL names the step
    expect(await b.page.locator('[data-slot="0:0"] [data-layer="changes"] .run').count()).toBeGreaterThan(0);
    expect(new URL(b.page.url()).hash).toBe('#step=10');
    expect(b.errors).toEqual([]);
    expect(b.requests).toEqual([]);
  });

  it('printable: the print stylesheet drops the toolbars and keeps the steps and lanes', async () => {
    await openReport(b.page, files.psc, '#step=10');
    await b.page.emulateMedia({ media: 'print' });
    try {
      expect(await b.page.locator('nav.tabs').isVisible()).toBe(false);
      expect(await b.page.locator('.toolbar').isVisible()).toBe(false);
      expect(await b.page.locator('tr.detail').isVisible()).toBe(true);
      expect(await b.page.locator('[data-slot="0:0"] [data-layer="rmp"] .run').first().isVisible()).toBe(true);
      const pdf = await b.page.pdf({ format: 'A4' });
      expect(pdf.subarray(0, 5).toString()).toBe('%PDF-');
    } finally {
      await b.page.emulateMedia({ media: 'screen' });
    }
  });

  it('a new fragment in the loaded page selects that step (hashchange)', async () => {
    await openReport(b.page, files.psc);
    await b.page.evaluate(() => {
      location.hash = '#step=4';
    });
    await expect.poll(() => b.page.getAttribute('body', 'data-step')).toBe('4');
    expect(await b.page.locator('tr.step.selected').getAttribute('data-index')).toBe('4');
  });

  it('keyboard and URL fragment: j/k step, #step=N&gfn=… selects a step and inspects a page', async () => {
    await openReport(b.page, files.psc, '#step=12&gfn=0x100010');
    expect(await b.page.getAttribute('body', 'data-step')).toBe('12');
    await expect.poll(() => b.page.locator('#inspector tr[data-layer="rmp"] td').nth(1).textContent()).toBe('assigned asid 1 4K validated');
    expect(await b.page.locator('#inspector tr[data-layer="mapping"] td').nth(1).textContent()).toMatch(/^4K \(pfn 0x[0-9a-f]+\)$/);
    await b.page.keyboard.press('j');
    expect(await b.page.getAttribute('body', 'data-step')).toBe('13');
    await b.page.keyboard.press('ArrowUp');
    await b.page.keyboard.press('k');
    expect(await b.page.getAttribute('body', 'data-step')).toBe('11');
    // zoomed to single pages around the inspected gfn: a page grid, the page is several pixels wide
    await b.page.click('[data-slot="0:0"] button[title^="zoom to single pages"]');
    const run = b.page.locator('[data-slot="0:0"] [data-layer="rmp"] .run').first();
    expect((await run.boundingBox())!.width).toBeGreaterThan(5);
  });

  it('an exploration of snp-rmp-timing: the phase where the invariant broke is highlighted and selected', async () => {
    await openReport(b.page, files.rmp);
    expect(await b.page.getAttribute('body', 'data-view')).toBe('explore');
    const marked = b.page.locator('td.pt.observed');
    expect(await marked.count()).toBe(1);
    expect(await marked.getAttribute('class')).toContain('selected');
    expect(await b.page.locator('#point-detail').textContent()).toMatch(/observed \(rmp-window\): private NPT mapping .* has no assigned RMP entry/);
    // the window: the gfn is mapped while its frame is not yet assigned in the RMP
    expect(await rmpLabels('mapping')).toEqual(['4K']);
    expect(await rmpLabels('rmp')).toEqual(['hypervisor']);
    // one swimlane per actor
    expect(await b.page.locator('.swim tr[data-actor]').evaluateAll((r) => r.map((x) => x.getAttribute('data-actor')))).toEqual(['vmm', 'cpu0']);
    // stepping on: the RMPUPDATE lands later and the page is assigned
    for (let i = 0; i < 12; i++) await b.page.keyboard.press('ArrowRight');
    expect(await rmpLabels('rmp')).toContain('assigned asid 1 4K validated');
    expect(b.errors).toEqual([]);
  });

  it('a counterexample: the violating phase is marked, both schedules can be chosen', async () => {
    await openReport(b.page, files.fvc);
    expect(await b.page.locator('td.pt.violation').count()).toBe(1);
    expect(await b.page.locator('td.pt.violation').getAttribute('class')).toContain('selected');
    expect(await b.page.locator('#violation').textContent()).toMatch(/^violation: SPTE gfn/);
    const buttons = b.page.locator('.schedsel button');
    if ((await buttons.count()) > 1) {
      await buttons.nth(1).click();
      expect(await b.page.locator('.schedsel button.active').textContent()).toMatch(/as found/);
      expect(new URL(b.page.url()).hash).toMatch(/schedule=1/);
    }
  });

  it('the diff view: model and kvm outcomes side by side, the disagreements marked', async () => {
    await openReport(b.page, files.diff);
    const marked = b.page.locator('tr.step.disagree');
    expect(await marked.count()).toBeGreaterThan(0);
    // it opens on the first disagreement, both outcomes in its detail
    expect(await b.page.locator('tr.step.selected').getAttribute('class')).toContain('disagree');
    expect(await b.page.locator('.diffcol > div').count()).toBe(2);
    expect(await b.page.locator('tr.detail .mismatch').first().textContent()).toMatch(/model vs kvm: /);
  });

  it('a 4 TiB guest opens and draws a step within 1 s', async () => {
    let best = Infinity;
    for (let i = 0; i < 3; i++) {
      await openReport(b.page, files.big, '#step=16');
      // from the start of the navigation to the first drawn step, as the page measured it
      best = Math.min(best, await b.page.evaluate(() => performance.now()));
    }
    expect(best).toBeLessThan(1000);
    const runs = await b.page.locator('.run').count();
    expect(runs).toBeLessThan(200);
    // the 2 MiB converted back to shared is far below a pixel at this zoom, and still drawn
    expect(await rmpLabels('attributes')).toEqual(['private', 'shared', 'private', 'shared']);
    // step 15 converted those 2 MiB back: zoomed to the change, the hole is a wide shared run
    await b.page.keyboard.press('k');
    expect(await b.page.getAttribute('body', 'data-step')).toBe('15');
    await b.page.click('button[title^="zoom every lane to what changed"]');
    const hole = b.page.locator('[data-slot="0:0"] [data-layer="attributes"] .run[data-label="shared"]');
    expect(await hole.count()).toBe(1);
    expect((await hole.boundingBox())!.width).toBeGreaterThan(100);
    expect(await hole.getAttribute('data-end')).toBe(String(0x140_0000_0000 / 4096 + 512));
  });
});
