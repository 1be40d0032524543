import type { BenchCase } from '../../../bench/types.js';
import { explore, loadBuiltinExploration } from '../src/index.js';

export const benches: BenchCase[] = [
  {
    name: 'explore.steps_per_second',
    unit: 'steps/s',
    target: { op: '>=', value: 200_000 },
    run() {
      const l = loadBuiltinExploration('fault-vs-conversion');
      if (!l.ok) throw new Error('fault-vs-conversion did not load');
      explore(l.exploration.scenario, { ...l.exploration.options, schedules: 300 }); // warm-up
      const r = explore(l.exploration.scenario, { ...l.exploration.options, mode: 'exhaustive', timeLimitMs: 3000 });
      return r.stats.stepsPerSecond;
    },
  },
];
