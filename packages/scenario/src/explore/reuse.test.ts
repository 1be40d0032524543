/**
 * The explorer runs every schedule of a search on one world, reset to its state after the
 * setup steps (ReusedWorld, GraphSnapshot). These tests compare a reset world with new ones
 * field by field, and the runs of whole searches on reset worlds with runs on new worlds.
 */
import { describe, expect, it } from 'vitest';
import { builtinExplorationNames, explore, loadBuiltinExploration, type RunResult } from '../index.js';
import { prng, runOnce } from './engine.js';
import { ReusedWorld, World } from './world.js';

function load(name: string) {
  const l = loadBuiltinExploration(name);
  if (!l.ok) throw new Error(l.errors.map((e) => e.message).join('\n'));
  return l.exploration;
}

/**
 * Where two object graphs differ: both walked in step (own keys in order, array elements, Map
 * and Set entries in order, typed-array and buffer bytes, prototypes), objects paired on first
 * sight, so a shared object on one side must be shared the same way on the other. Functions
 * are equal when they are the same function or the same code (a closure of each world).
 */
function diffGraphs(a: unknown, b: unknown, skip: ReadonlySet<unknown>, limit = 50): string[] {
  const out: string[] = [];
  const pairs = new Map<object, object>();
  const stack: [unknown, unknown, string][] = [[a, b, '$']];
  const differ = (path: string, what: string) => {
    if (out.length < limit) out.push(`${path}: ${what}`);
  };
  while (stack.length > 0) {
    const [x, y, path] = stack.pop()!;
    if (typeof x !== typeof y) {
      differ(path, `${typeof x} vs ${typeof y}`);
      continue;
    }
    if (x === y) continue;
    if (typeof x === 'function') {
      if (String(x) !== String(y)) differ(path, 'different functions');
      continue;
    }
    if (x === null || y === null || typeof x !== 'object') {
      if (!(typeof x === 'number' && Number.isNaN(x) && Number.isNaN(y))) differ(path, `${String(x)} vs ${String(y)}`);
      continue;
    }
    const xo = x as object;
    const yo = y as object;
    if (skip.has(xo) || skip.has(yo)) {
      differ(path, 'an input of one world only');
      continue;
    }
    const paired = pairs.get(xo);
    if (paired !== undefined) {
      if (paired !== yo) differ(path, 'shared differently');
      continue;
    }
    pairs.set(xo, yo);
    if (Object.getPrototypeOf(xo) !== Object.getPrototypeOf(yo)) {
      differ(path, `${xo.constructor?.name} vs ${yo.constructor?.name}`);
      continue;
    }
    if (ArrayBuffer.isView(xo) || xo instanceof ArrayBuffer) {
      const bx = ArrayBuffer.isView(xo) ? new Uint8Array(xo.buffer, xo.byteOffset, xo.byteLength) : new Uint8Array(xo);
      const by = ArrayBuffer.isView(yo) ? new Uint8Array(yo.buffer, yo.byteOffset, yo.byteLength) : new Uint8Array(yo as ArrayBuffer);
      if (bx.length !== by.length) differ(path, `${bx.length} vs ${by.length} bytes`);
      else if (bx.some((v, i) => v !== by[i])) differ(path, 'different bytes');
      continue;
    }
    if (xo instanceof Map) {
      const ex = [...xo];
      const ey = [...(yo as Map<unknown, unknown>)];
      if (ex.length !== ey.length) differ(path, `${ex.length} vs ${ey.length} entries`);
      else ex.forEach(([k, v], i) => stack.push([k, ey[i]![0], `${path}.key(${i})`], [v, ey[i]![1], `${path}.get(${String(k)})`]));
    } else if (xo instanceof Set) {
      const ex = [...xo];
      const ey = [...(yo as Set<unknown>)];
      if (ex.length !== ey.length) differ(path, `${ex.length} vs ${ey.length} members`);
      else ex.forEach((v, i) => stack.push([v, ey[i], `${path}.member(${i})`]));
    }
    const kx = Reflect.ownKeys(xo);
    const ky = Reflect.ownKeys(yo);
    if (kx.length !== ky.length || kx.some((k, i) => k !== ky[i])) {
      differ(path, `keys ${kx.map(String).join(',')} vs ${ky.map(String).join(',')}`);
      continue;
    }
    for (const k of kx) stack.push([(xo as Record<string | symbol, unknown>)[k], (yo as Record<string | symbol, unknown>)[k], `${path}.${String(k)}`]);
  }
  return out;
}

/** the paths of a diff, without what differs there */
const paths = (d: string[]) => d.map((s) => s.slice(0, s.indexOf(': '))).sort();

/** random runs on `reused` (every one begins with take(), which resets the world) */
function randomRuns(name: string, reused: ReusedWorld, runs: number): RunResult[] {
  const x = load(name);
  const rnd = prng(7);
  const out: RunResult[] = [];
  for (let i = 0; i < runs; i++) {
    const r = runOnce(
      x.scenario,
      (enabled) => {
        const idx: number[] = [];
        for (let a = 0; a < 30; a++) if (enabled & (1 << a)) idx.push(a);
        return idx[Math.floor(rnd() * idx.length)]!;
      },
      { ...x.options, bound: 24 },
      reused,
    );
    out.push(r);
  }
  return out;
}

describe('a reset world equals a new one', () => {
  for (const name of builtinExplorationNames()) {
    it(`${name}: after runs and a reset, every field is what a new world has (but the global VM id and inode counters)`, () => {
      const x = load(name);
      const skip = new Set<unknown>([x.scenario]);
      // the first world of a scenario also runs the whole-VM check after the setup steps, which
      // leaves other contents in scratch buffers (traversal stacks): compare later worlds
      new World(x.scenario, x.options).dispose();
      // what differs between any two new worlds: the global counters (VM ids, inode numbers)
      const counters = paths(diffGraphs(new World(x.scenario, x.options), new World(x.scenario, x.options), skip));
      for (const p of counters) expect(p).toMatch(/\.(id|ino)$/);
      const reused = new ReusedWorld(x.scenario, x.options);
      const w = reused.take();
      const runs = randomRuns(name, reused, 40);
      expect(runs.reduce((n, r) => n + r.steps, 0)).toBeGreaterThan(40);
      // the runs changed the world: more than the counters differs from a new world now
      expect(diffGraphs(w, new World(x.scenario, x.options), skip).length).toBeGreaterThan(counters.length);
      expect(reused.take()).toBe(w);
      expect(paths(diffGraphs(w, new World(x.scenario, x.options), skip))).toEqual(counters);
      reused.dispose();
    });
  }
});

describe('runs on a reset world are the runs on new worlds', () => {
  const strip = (r: RunResult) => ({ ...r, events: undefined, observations: [...r.observations] });
  for (const name of builtinExplorationNames()) {
    for (const skipRetryCheck of [false, true]) {
      it(`${name}${skipRetryCheck ? ' with skipRetryCheck' : ''}: the same runs, in order, with the same results`, () => {
        const x = load(name);
        const opts = { ...x.options, schedules: 400, maxViolations: 1000, shrink: false, ...(skipRetryCheck && { faultInjection: { skipRetryCheck: true } }) };
        const fresh: RunResult[] = [];
        const reset: RunResult[] = [];
        const a = explore(x.scenario, { ...opts, freshWorlds: true, onRun: (r) => fresh.push(r) });
        const b = explore(x.scenario, { ...opts, onRun: (r) => reset.push(r) });
        expect(reset.length).toBe(fresh.length);
        expect(reset.map(strip)).toEqual(fresh.map(strip));
        expect({ ...b.stats, elapsedMs: 0, stepsPerSecond: 0 }).toEqual({ ...a.stats, elapsedMs: 0, stepsPerSecond: 0 });
        // a violation's replay runs on a new world, with its own inode number and VM id
        const norm = (r: typeof a) => r.violations.map((v) => ({ ...v, events: v.events.map((e) => ({ name: e.name, fields: { ...e.fields, ino: 0, vm: 0 } })) }));
        expect(norm(b)).toEqual(norm(a));
      }, Math.max(120_000, Number(process.env.CCMEM_TEST_TIMEOUT_MS) || 0));
    }
  }
});

describe('when a reset world cannot be used', () => {
  it('a run that disposed part of the recorded world ends the reuse: the later runs get new worlds', () => {
    const x = load('fault-vs-conversion');
    const reused = new ReusedWorld(x.scenario, x.options);
    const w = reused.take()!;
    w.kvm.dispose(); // as a run that destroyed the VM: its page-table buffers went to the pools
    expect(reused.take()).toBeNull();
    expect(reused.enabled).toBe(false);
    const r = runOnce(x.scenario, [0, 1, 2], { ...x.options, bound: 3 }, reused);
    expect(r.violation).toBeNull();
    expect(r.schedule).toEqual([0, 1, 2]);
  });

  it('a run that throws on the reset world (a property added to a sealed object) runs again on a new world', () => {
    const x = load('fault-vs-conversion');
    const reused = new ReusedWorld(x.scenario, x.options);
    const worlds: World[] = [];
    const r = runOnce(
      x.scenario,
      (enabled, depth, world) => {
        worlds.push(world);
        if (depth === 0) (world.vm as unknown as Record<string, unknown>).note = 1;
        return 31 - Math.clz32(enabled & -enabled);
      },
      { ...x.options, bound: 4 },
      reused,
    );
    expect(r.violation).toBeNull();
    expect(r.schedule.length).toBe(4);
    expect(reused.enabled).toBe(false);
    // the first attempt threw on the sealed VM at its first choice; the rerun had its own world
    expect(worlds[0]).not.toBe(worlds[1]);
    expect(Object.isSealed(worlds[0]!.vm)).toBe(true);
    expect(Object.isSealed(worlds[1]!.vm)).toBe(false);
  });
});
