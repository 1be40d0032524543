/**
 * Regenerates the report screenshots of the documentation (docs/img/report-*.png) in headless
 * Chromium: `pnpm report:screenshots`.
 */
import { mkdirSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { profileByName } from '@ccmem/core';
import { buildDiffReport, buildExploreReport, buildRunReport, createModelTarget, explore, loadBuiltinExploration, loadScenarioFile, parseScenario, reportToJson } from '@ccmem/scenario';
import { writeReport } from '../src/commands/report.js';
import { findChromium, openBrowser, openReport } from './browser.js';

const ROOT = new URL('../../../', import.meta.url).pathname;
const OUT = join(ROOT, 'docs/img');
const found = findChromium();
if (!('path' in found)) throw new Error(found.reason);
mkdirSync(OUT, { recursive: true });
const dir = mkdtempSync(join(tmpdir(), 'ccmem-shots-'));

const psc = join(dir, 'psc.html');
writeReport(psc, buildRunReport(loadScenarioFile(join(ROOT, 'packages/scenario/scenarios/snp/psc-shared-to-private.yaml')), { file: 'packages/scenario/scenarios/snp/psc-shared-to-private.yaml' }));
const big = join(dir, '4tib.html');
writeReport(big, buildRunReport(loadScenarioFile(join(ROOT, 'apps/cli/test-support/guest-4tib.yaml')), { file: 'apps/cli/test-support/guest-4tib.yaml' }));
const rmp = join(dir, 'rmp.html');
{
  const x = loadBuiltinExploration('snp-rmp-timing');
  if (!x.ok) throw new Error('snp-rmp-timing');
  const { scenario, options } = x.exploration;
  writeReport(rmp, buildExploreReport(scenario, options, reportToJson(explore(scenario, options), options.bound), { name: 'snp-rmp-timing' }));
}
const diff = join(dir, 'diff.html');
{
  const text = readFileSync(join(ROOT, 'packages/scenario/scenarios/snp/psc-user-errors-upstream.yaml'), 'utf8').replace(', profile: upstream', '');
  const { data } = buildDiffReport(parseScenario(text, 'psc-user-errors.yaml'), createModelTarget({ hostProfile: profileByName('linux-6.18')! }), createModelTarget(), { file: 'psc-user-errors.yaml (model as linux-6.18 vs upstream)' });
  writeReport(diff, data);
}

const b = await openBrowser(found.path, { width: 1500, height: 950 });
async function shot(file: string, fragment: string, name: string, zoom: boolean): Promise<void> {
  await openReport(b.page, file, fragment);
  if (zoom) {
    await b.page.click('button[title^="zoom every lane to what changed"]');
  }
  await b.page.waitForTimeout(100);
  await b.page.screenshot({ path: join(OUT, name) });
  console.log(`docs/img/${name}`);
}
await shot(psc, '#step=10&gfn=0x100010', 'report-run-snp.png', true);
await shot(rmp, '#view=explore&schedule=0&point=6&gfn=0x100000', 'report-explore-snp-rmp-timing.png', true);
await shot(big, '#step=15&gfn=0x14000100', 'report-4tib.png', false);
await shot(diff, '', 'report-diff.png', false);
if (b.errors.length) throw new Error(b.errors.join('; '));
await b.close();
