/** Shared helpers of the benches: medians, timed rates, least-squares exponents, shuffles, heap sizes. */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/** the median of `values` (the mean of the two middle values for an even count) */
export function median(values: readonly number[]): number {
  if (values.length === 0) throw new RangeError('median of nothing');
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >>> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** one timed run: the amount of work done, its wall-clock and process CPU milliseconds */
export interface Timed {
  work: number;
  ms: number;
  cpuMs: number;
}

/** wall-clock and process CPU time of `fn` */
export function timed(fn: () => void): { ms: number; cpuMs: number } {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  fn();
  const ms = performance.now() - t0;
  const c = process.cpuUsage(c0);
  return { ms, cpuMs: (c.user + c.system) / 1000 };
}

/** median of `rounds` timed runs of `once` (which returns the amount of work done), after one warm-up */
export function medianRate(rounds: number, once: () => Timed): number {
  once(); // warm-up (JIT)
  const rates: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const { work, ms, cpuMs } = once();
    // CCMEM_BENCH_CPU=1: also print the rate by process CPU time (all threads), which a
    // loaded machine inflates less than wall-clock time
    if (process.env.CCMEM_BENCH_CPU) console.error(`  round ${r}: ${(work / (ms / 1000)).toPrecision(4)}/s wall, ${(work / (cpuMs / 1000)).toPrecision(4)}/s cpu`);
    rates.push(work / (ms / 1000));
  }
  return median(rates);
}

/**
 * The least-squares slope of log(y) against log(x): the exponent k of y ≈ c·x^k fitted over
 * every point (1 for linear growth, 2 for quadratic).
 */
export function logLogSlope(xs: readonly number[], ys: readonly number[]): number {
  if (xs.length !== ys.length || xs.length < 2) throw new RangeError('logLogSlope needs two or more points');
  const lx = xs.map(Math.log);
  const ly = ys.map(Math.log);
  const mx = lx.reduce((a, b) => a + b, 0) / lx.length;
  const my = ly.reduce((a, b) => a + b, 0) / ly.length;
  let num = 0;
  let den = 0;
  for (let i = 0; i < lx.length; i++) {
    num += (lx[i]! - mx) * (ly[i]! - my);
    den += (lx[i]! - mx) ** 2;
  }
  return num / den;
}

/** a deterministic random permutation of 0..n-1 (Fisher–Yates over a 32-bit xorshift) */
export function shuffled(n: number, seed = 0x9e3779b9): Float64Array {
  const a = new Float64Array(n);
  for (let i = 0; i < n; i++) a[i] = i;
  let x = seed >>> 0 || 1;
  for (let i = n - 1; i > 0; i--) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    const j = x % (i + 1);
    const t = a[i]!;
    a[i] = a[j]!;
    a[j] = t;
  }
  return a;
}

/** global.gc when node runs with --expose-gc, else the same function obtained at run time */
export function getGc(): () => void {
  const g = (globalThis as { gc?: () => void }).gc;
  if (g) return g;
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}

/**
 * Bytes the process holds for JavaScript: the V8 heap in use plus the memory behind
 * ArrayBuffers (typed arrays live outside the heap), after two full collections.
 */
export function heapBytes(gc: () => void): number {
  gc();
  gc();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}
