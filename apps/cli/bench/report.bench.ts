import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BenchCase } from '../../../bench/types.js';
import { median } from '../../../bench/stats.js';
import { buildRunReport, loadScenarioFile } from '@ccmem/scenario';
import { findChromium, openBrowser, openReport } from '../test-support/browser.js';
import { writeReport } from '../src/commands/report.js';

const ROUNDS = 5;
const FIXTURE = new URL('../test-support/guest-4tib.yaml', import.meta.url).pathname;

export const benches: BenchCase[] = [
  {
    // the report of a 4 TiB SEV-SNP guest (apps/cli/test-support/guest-4tib.yaml: one 4 TiB
    // slot, 2 TiB private, a few pages touched) opened in headless Chromium: ms from the start
    // of the navigation to the drawn state of its last step (the page's performance.now() once
    // it has rendered), median of 5 loads after a warm-up load; the OS Chromium, no GPU
    name: 'report.render_4tib_ms',
    unit: 'ms',
    target: { op: '<=', value: 1000 },
    async run() {
      const found = findChromium();
      if (!('path' in found)) throw new Error(found.reason);
      const dir = mkdtempSync(join(tmpdir(), 'ccmem-bench-report-'));
      const file = join(dir, '4tib.html');
      const data = buildRunReport(loadScenarioFile(FIXTURE));
      writeReport(file, data);
      const last = data.steps[data.steps.length - 1]!.index;
      const b = await openBrowser(found.path);
      try {
        const times: number[] = [];
        for (let i = 0; i <= ROUNDS; i++) {
          await openReport(b.page, file, `#step=${last}`);
          const ms = await b.page.evaluate(() => performance.now());
          if (i > 0) times.push(ms);
        }
        if (b.errors.length) throw new Error(`the page raised: ${b.errors.join('; ')}`);
        console.error(`report.render_4tib_ms: report file ${statSync(file).size} bytes, ${data.steps.length} steps, ${data.states.length} distinct states`);
        return median(times);
      } finally {
        await b.close();
        rmSync(dir, { recursive: true, force: true });
      }
    },
  },
];
