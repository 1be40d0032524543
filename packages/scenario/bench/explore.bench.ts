import type { BenchCase } from '../../../bench/types.js';
import { median } from '../../../bench/stats.js';
import { explore, loadBuiltinExploration } from '../src/index.js';

/** timed rounds; the median is reported (docs/benchmarks.md, "How the numbers are taken") */
const ROUNDS = 5;

export const benches: BenchCase[] = [
  {
    // scheduled phases per second over the whole exhaustive exploration of fault-vs-conversion
    // (bound 8: every run rebuilds the VM from the setup steps and replays its prefix)
    name: 'explore.steps_per_second',
    unit: 'steps/s',
    target: { op: '>=', value: 200_000 },
    run() {
      const l = loadBuiltinExploration('fault-vs-conversion');
      if (!l.ok) throw new Error('fault-vs-conversion did not load');
      const x = l.exploration;
      explore(x.scenario, { ...x.options, mode: 'exhaustive' }); // warm-up: one whole exploration
      const rates: number[] = [];
      for (let i = 0; i < ROUNDS; i++) {
        const r = explore(x.scenario, { ...x.options, mode: 'exhaustive', timeLimitMs: 3000 });
        if (!r.pass) throw new Error('fault-vs-conversion: the exhaustive exploration found a violation');
        rates.push(r.stats.stepsPerSecond);
      }
      return median(rates);
    },
  },
];
