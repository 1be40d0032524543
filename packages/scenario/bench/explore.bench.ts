import type { BenchCase } from '../../../bench/types.js';
import { median } from '../../../bench/stats.js';
import { explore, exploreWorkers, loadBuiltinExploration } from '../src/index.js';

/** timed rounds; the median is reported (docs/benchmarks.md, "How the numbers are taken") */
const ROUNDS = 5;

function load(name: string) {
  const l = loadBuiltinExploration(name);
  if (!l.ok) throw new Error(`${name} did not load`);
  return l.exploration;
}

export const benches: BenchCase[] = [
  {
    // scheduled phases per second over the whole exhaustive exploration of fault-vs-conversion
    // (bound 8: every run resets the world to its state after the setup steps and replays its prefix)
    name: 'explore.steps_per_second',
    unit: 'steps/s',
    target: { op: '>=', value: 200_000 },
    run() {
      const x = load('fault-vs-conversion');
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
  {
    // schedules (runs) the exhaustive search needs to complete fault-vs-conversion-4vcpu (four
    // vCPUs and a conversion, bound 6 as shipped, the default reduction): deterministic, lower
    // is better; the target is the count with 2 MiB footprints and sleep sets alone (5,790)
    name: 'explore.schedules_4vcpu',
    unit: 'schedules',
    target: { op: '<=', value: 5790 },
    run() {
      const x = load('fault-vs-conversion-4vcpu');
      const r = explore(x.scenario, x.options);
      if (!r.pass || !r.stats.complete) throw new Error('fault-vs-conversion-4vcpu: the exhaustive exploration did not pass completely');
      return r.schedules;
    },
  },
  {
    // wall time of the same exhaustive exploration with --workers 2 (two worker threads, one
    // shard each, merged; worker start-up and module loading included), median of 3 rounds
    name: 'explore.wall_4vcpu_workers2',
    unit: 'ms',
    target: { op: '<=', value: 60_000 },
    async run() {
      const x = load('fault-vs-conversion-4vcpu');
      const walls: number[] = [];
      for (let i = 0; i < 3; i++) {
        const t0 = performance.now();
        const r = await exploreWorkers({ builtin: 'fault-vs-conversion-4vcpu' }, x.options, 2);
        walls.push(performance.now() - t0);
        if (r.result !== 'pass') throw new Error(`fault-vs-conversion-4vcpu with 2 workers: ${r.result}`);
      }
      return median(walls);
    },
  },
];
