/**
 * The explorer: runs the actors of a scenario's `concurrent:` block in chosen orders, one
 * phase at a time, and checks the invariants after every phase and at the end.
 *
 * A schedule is the list of actors whose next phase runs, written `vmm.cpu0.cpu0…`. After the
 * scheduled phases, the run is completed deterministically (each unfinished actor in turn runs
 * until it finishes or spins; a spinning actor yields to the next); an actor that can no
 * longer finish while the others make no progress is a livelock. Everything is deterministic,
 * so a schedule replays exactly.
 *
 * Modes:
 *  - exhaustive: depth-first over every schedule up to `bound` scheduled phases, with sleep
 *    sets for partial-order reduction (Godefroid 1996): after the subtree of actor t at a
 *    node is explored, t sleeps in the sibling subtrees until a dependent phase runs. Two
 *    phases are independent when their gfn footprints are disjoint and neither is global
 *    (attribute invalidate/post, hole punch, a default VM's zap-all memslot phase, atomic
 *    actions); other memslot phases have the slot's range as footprint.
 *    A spinning actor (its fault retried, or a lock it needs is held) is disabled until
 *    another actor has run a phase: re-running it first would only repeat the same spin.
 *  - random: `schedules` runs, each choosing uniformly among enabled actors (seeded PRNG).
 *  - pct: probabilistic concurrency testing (Burckhardt et al. 2010): random actor priorities
 *    and `depth - 1` random priority change points per run (seeded).
 */
import { isAddrRef } from '../numbers.js';
import { checkVmInvariants, type TraceEvent } from '@ccmem/core';
import { checkOutcomeInvariant, sameValue, type ActorStepOutcome } from '../runner.js';
import { ASSERT_LOCATORS, EXPLORE_ONLY_INVARIANT_NAMES, RUN_INVARIANT_NAMES, type Invariant, type Scenario, type Step } from '../schema.js';
import { CHECK_ALL, independent, type CheckRange, type ExploreMode, type Footprint } from './types.js';
import { ReusedWorld, World, type ActorStepRecord, type WorldOptions } from './world.js';

export interface Observation {
  /** label in reports */
  name: string;
  /** an invariant message matching this is an observation, not a violation */
  pattern: string;
}

export interface ExploreOptions extends WorldOptions {
  mode?: ExploreMode;
  /** scheduled phases per run (exhaustive: the depth bound) */
  bound?: number;
  seed?: number;
  /** runs for random/pct; cap on runs for exhaustive */
  schedules?: number;
  /** pct: the bug depth d (d - 1 priority change points) */
  depth?: number;
  /** stop after this many violating runs (default 1) */
  maxViolations?: number;
  /** phases the completion of one run may take before it is called a livelock */
  livenessBound?: number;
  /** shrink the first violation to a shortest failing schedule (default true) */
  shrink?: boolean;
  /** invariant messages that are reported as observations instead of violations */
  observe?: Observation[];
  /** stop exploring after this many milliseconds */
  timeLimitMs?: number;
  /** check the whole VM after every phase (see ExploreRunOptions.fullChecks) */
  fullChecks?: boolean;
  /**
   * build every run's world from the setup steps instead of resetting one world (ReusedWorld);
   * the results are the same, which the tests cross-check
   */
  freshWorlds?: boolean;
  /**
   * exhaustive: `dpor` (default) branches, below the shard depth (ShardSpec.depth, default
   * SHARD_DEPTH, sharded or not), only where a race was seen (Flanagan–Godefroid backtrack
   * sets, conservative: every dependent pair, not only the last one; full branching after a step
   * that enabled or disabled another actor), and on every enabled actor above it (so a shard
   * partition does not depend on what the subtrees found), pruned by sleep sets; `sleep`
   * branches on every enabled actor at every depth, pruned by sleep sets only.
   */
  reduction?: 'sleep' | 'dpor';
  /** called with every run's result (tests: what the runs reached) */
  onRun?: (r: RunResult) => void;
  /** exhaustive: explore only shard `index` of `count` (see ShardSpec) */
  shard?: ShardSpec;
  /** called about every `progressIntervalMs` (default 1000) while exploring, and once at the end */
  onProgress?: (p: ExploreProgress) => void;
  progressIntervalMs?: number;
}

/**
 * A deterministic partition of the exhaustive search. Every run's first `depth` scheduled
 * choices (its prefix) name one subtree; the subtrees are numbered in depth-first order, and
 * shard `index` of `count` explores those whose number is `index` mod `count`. Every shard walks
 * the same tree above `depth` (the sleep sets there depend only on the order of the choices, not
 * on what their subtrees found), so the shards' runs are disjoint and their union is exactly the
 * runs of the unsharded search. A shard pays one partial run (its prefix) per subtree it skips.
 */
export interface ShardSpec {
  /** 0-based */
  index: number;
  count: number;
  /** prefix length that names a subtree (default SHARD_DEPTH) */
  depth?: number;
}

/** default prefix length of a shard's subtrees */
export const SHARD_DEPTH = 4;

/** Why an exploration stopped. */
export type StopReason = 'complete' | 'violations' | 'time' | 'max-schedules' | 'shards-missing';

/** A progress report while exploring. */
export interface ExploreProgress {
  /** runs done (this shard's) */
  schedules: number;
  steps: number;
  elapsedMs: number;
  stepsPerSecond: number;
  /** exhaustive: choices still to explore on the current DFS stack (random/pct: runs left) */
  frontier: number;
  violatingRuns: number;
  done: boolean;
}

export interface ExploreViolation {
  /** the schedule, as actor names joined by "." */
  schedule: string;
  violation: string;
  /** the kernel events of the run (replayed) */
  events: TraceEvent[];
  /** the schedule as found, before shrinking */
  original?: string;
}

export interface ExploreStats {
  /** phases executed, replays included */
  steps: number;
  elapsedMs: number;
  stepsPerSecond: number;
  /** runs cut short because every enabled actor was asleep (redundant interleavings) */
  sleepBlocked: number;
  /** runs in which each observation was seen */
  observations: Record<string, number>;
  /** runs in which a guest access took a vendor #NPF on a present mapping (SNP RMP fault) */
  vendorFaultRuns: number;
  /** violating runs found (before stopping) */
  violatingRuns: number;
  /**
   * exhaustive: the whole tree up to the bound (this shard's part of it, when sharded) was
   * explored; random/pct: every requested run ran
   */
  complete: boolean;
  /** why the search stopped */
  stopReason: StopReason;
  /** exhaustive: subtrees (prefixes) skipped because another shard owns them */
  skippedPrefixes?: number;
}

export interface ExploreReport {
  name: string;
  mode: ExploreMode;
  schedules: number;
  violations: ExploreViolation[];
  /** no violation was found (see stats.complete: an incomplete search proves nothing) */
  pass: boolean;
  stats: ExploreStats;
  /** the shard this report covers (absent: the whole search) */
  shard?: { index: number; count: number; depth: number };
}

/** One run's result. */
export interface RunResult {
  /** the scheduled choices that ran (actor indexes) */
  schedule: number[];
  violation: string | null;
  steps: number;
  observations: Set<string>;
  vendorFaults: number;
  sleepBlocked: boolean;
  events: TraceEvent[];
  records: ActorStepRecord[];
}

const KNOWN = new Set([...RUN_INVARIANT_NAMES, ...EXPLORE_ONLY_INVARIANT_NAMES]);

/** the named invariants the explorer checks (docs/explore.md) */
export const EXPLORE_INVARIANTS: readonly string[] = [...KNOWN];

/** Errors in the concurrent block the explorer cannot run (exit 2). */
/**
 * Actor steps that name a vCPU no step creates (`vcpu: 3` without `create_vcpu: { id: 3 }`, or
 * a name no `create_vcpu` step is `as:`): such a step could never run, and an exploration of
 * it would pass vacuously. Each with the step's line.
 */
export function missingVcpuRefs(scenario: Scenario): { message: string; line: number | undefined }[] {
  const c = scenario.concurrent;
  if (!c) return [];
  const all = [...scenario.steps, ...Object.values(c.actors).flat()];
  const ids = new Set<number>();
  const names = new Set<string>();
  for (const st of all) {
    if (st.op !== 'create_vcpu') continue;
    const id = (st.args as { id: unknown }).id;
    if (typeof id === 'number') ids.add(id);
    if (st.as !== undefined) names.add(st.as);
  }
  const out: { message: string; line: number | undefined }[] = [];
  for (const [actor, steps] of Object.entries(c.actors)) {
    steps.forEach((st, i) => {
      const v = (st.args as { vcpu?: unknown }).vcpu;
      if (v === undefined) return;
      const missing = typeof v === 'number' ? !ids.has(v) : isAddrRef(v) ? !names.has(v.ref) : false;
      if (missing) {
        const what = typeof v === 'number' ? `vCPU ${v}` : `vCPU "${isAddrRef(v) ? v.ref : String(v)}"`;
        out.push({ message: `actor ${actor} step ${i} (${st.op}): no step creates ${what} (create_vcpu)`, line: st.line });
      }
    });
  }
  return out;
}

export function validateForExplore(scenario: Scenario): string[] {
  const out: string[] = [];
  const c = scenario.concurrent;
  if (!c) return ['the scenario has no concurrent: block'];
  const names = Object.keys(c.actors);
  if (names.length > 30) out.push('at most 30 actors');
  for (const n of names) if (!/^[A-Za-z_][A-Za-z0-9_-]*$/.test(n)) out.push(`actor name "${n}" must be letters, digits, _ or -`);
  for (const inv of c.invariants ?? []) {
    if (typeof inv === 'string' && !KNOWN.has(inv)) out.push(`unknown invariant "${inv}" (known: ${[...KNOWN].join(', ')})`);
  }
  out.push(...missingVcpuRefs(scenario).map((m) => m.message));
  return out;
}

/* ------------------------------------------------------------------------------------------ */
/* PRNG                                                                                       */
/* ------------------------------------------------------------------------------------------ */

/** mulberry32: small, fast, seeded */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/* ------------------------------------------------------------------------------------------ */
/* One run                                                                                    */
/* ------------------------------------------------------------------------------------------ */

/** picks the next actor: a bitmask of enabled actors in, an index (or -1 to stop) out */
export type Chooser = (enabled: number, depth: number, world: World) => number;

interface RunState {
  world: World;
  /** check the whole VM after every phase, not only the phase's range */
  fullChecks: boolean;
  clock: number;
  violation: string | null;
  observations: Set<string>;
  observeRe: { name: string; re: RegExp }[];
  named: Set<string>;
  steps: number;
  /** invariant messages of the current phase (for onPhase) */
  messages: string[];
  onPhase: ((p: PhaseReport) => void) | undefined;
}

function enabledMask(world: World): number {
  const actors = world.actors;
  let mask = 0;
  for (let i = 0; i < actors.length; i++) {
    const a = actors[i]!;
    if (a.finished) continue;
    if (a.spinning) {
      // disabled until another actor has run since its spin
      let other = false;
      for (let j = 0; j < actors.length; j++) if (j !== i && actors[j]!.lastRun > a.lastRun) other = true;
      if (!other) continue;
    }
    mask |= 1 << i;
  }
  return mask;
}

/**
 * The invariants after a phase. A phase changes SPTEs, attributes and backings only of the
 * gfns in its check range (Actor.checkRange: the gfn a fault maps, the range an attribute
 * change converts), so after a ranged phase only the SPTEs overlapping that range are checked;
 * after a global phase (hole punch, memslot zap of the default VM, atomic actions), and at the
 * end of every run, the whole VM is. The invalidation counters and the vendor backend's rules
 * run every time.
 */
function checkAfterPhase(st: RunState, fp: CheckRange): void {
  const w = st.world;
  if (w.phaseViolations.length) {
    st.violation = w.phaseViolations[0]!;
    return;
  }
  const v = checkVmInvariants(
    w.vm,
    fp.global || st.fullChecks ? FULL_CHECK : { allowInvalidSlots: true, pageBudget: 4096, gfnRange: { start: fp.lo, end: fp.hi }, memslots: fp.memslots },
  );
  reportInvariants(st, v);
  if (st.violation === null && st.named.has('vm-not-bugged') && w.vm.dead) st.violation = `the VM was marked bugged: ${w.vm.deadReason}`;
}

const FULL_CHECK = { allowInvalidSlots: true, pageBudget: 4096 } as const;

/** invariant messages: observations when they match an `observe` pattern, else the violation */
function reportInvariants(st: RunState, messages: readonly string[]): void {
  for (const msg of messages) {
    if (st.onPhase) st.messages.push(msg);
    const obs = st.observeRe.find((o) => o.re.test(msg));
    if (obs) st.observations.add(obs.name);
    else {
      st.violation = msg;
      return;
    }
  }
}

function runPhase(st: RunState, i: number): void {
  const actor = st.world.actors[i]!;
  const fp = actor.checkRange();
  const hook = st.onPhase;
  const step = actor.firstIndex + actor.next;
  const op = actor.steps[actor.next]?.op ?? '';
  const phase = actor.active ? String((actor.active.op as { phase?: unknown }).phase ?? '') : 'begin';
  if (hook) st.messages = [];
  actor.runPhase(++st.clock);
  st.steps++;
  checkAfterPhase(st, fp);
  hook?.({ world: st.world, actor: i, step, op, phase, messages: st.messages, violation: st.violation });
}

/** the deterministic end of a run: every unfinished actor in turn until done or spinning */
function complete(st: RunState, bound: number): void {
  const w = st.world;
  let budget = bound;
  let idleRounds = 0;
  while (st.violation === null) {
    let any = false;
    let progressed = false;
    for (const a of w.actors) {
      if (a.finished) continue;
      any = true;
      while (!a.finished && st.violation === null && budget-- > 0) {
        runPhase(st, a.index);
        if (a.spinning) break;
        progressed = true;
      }
      if (st.violation !== null) return;
      if (budget <= 0) break;
    }
    if (!any) return;
    // a spin right after another actor changed the state is a retry that will now succeed;
    // two rounds in a row without progress is a livelock
    idleRounds = progressed ? 0 : idleRounds + 1;
    if (idleRounds >= 2 || budget <= 0) {
      const stuck = w.actors.filter((a) => !a.finished).map((a) => `${a.name} (step ${a.next}: ${a.steps[a.next]?.op}, phase ${a.active?.op.phase ?? 'begin'})`);
      st.violation = `livelock: ${stuck.join(', ')} cannot finish once the other actors are done`;
      return;
    }
  }
}

function finalChecks(st: RunState, scenario: Scenario): void {
  const w = st.world;
  if (st.violation !== null) return;
  const named = st.named;
  for (const r of w.records) {
    if (named.has('pre-fault-documented-errno') && r.op === 'pre_fault_memory') {
      const e = r.outcome.errno;
      if (e !== undefined && e !== 'EAGAIN' && e !== 'ENOENT') {
        st.violation = `${r.actor}: KVM_PRE_FAULT_MEMORY failed with ${e}, not a documented result (0, EAGAIN, ENOENT)`;
        return;
      }
    }
  }
  let done: ActorStepOutcome[] | null = null;
  for (const inv of scenario.concurrent?.invariants ?? []) {
    if (typeof inv === 'string') continue;
    if ('outcome' in inv) {
      done ??= w.records.map((r) => {
        const a = w.actors.find((x) => x.name === r.actor)!;
        return { actor: r.actor, step: r.index - a.firstIndex, op: r.op, outcome: r.outcome, start: r.start, end: r.end };
      });
      const msg = checkOutcomeInvariant(inv.outcome, done);
      if (msg) {
        st.violation = msg;
        return;
      }
      continue;
    }
    const msg = checkAssert(w, inv);
    if (msg) {
      st.violation = msg;
      return;
    }
  }
}

function checkAssert(w: World, inv: Extract<Invariant, { assert: unknown }>): string | null {
  const step: Step = { op: 'assert', args: inv.assert, expect: {} };
  const args = inv.assert as Record<string, unknown>;
  const outcome = w.target.execute({ index: -1, op: 'assert', args } as never, w.ctx);
  if (outcome.errno) return `assert ${String(args.what)}: could not inspect (${outcome.errno})`;
  void step;
  const state = outcome.detail ?? {};
  for (const [k, want] of Object.entries(args)) {
    if ((ASSERT_LOCATORS as readonly string[]).includes(k) || want === undefined) continue;
    if (!sameValue(want, state[k])) return `assert ${String(args.what)}: expected ${k} ${String(want)}, found ${String(state[k])}`;
  }
  return null;
}

/** the no-stale-data rule, checked as each read finishes */
function installDataCheck(st: RunState): void {
  const w = st.world;
  w.onStepDone = (rec) => {
    if (st.violation !== null || rec.op !== 'guest_read' || rec.value === undefined) return;
    if (rec.value === 0n) return;
    const gfn = rec.lo;
    const slot = w.vm.gfnToMemslot(gfn);
    for (const p of w.punches) {
      if (p.done < 0 || p.done >= rec.start) continue;
      if (!slot || slot.gmemFile !== p.file) continue;
      const pgoff = gfn - slot.baseGfn + slot.gmemPgoff;
      if (pgoff < p.start || pgoff >= p.end) continue;
      const rewritten = w.records.some((r) => r.op === 'guest_write' && r.lo === gfn && r.end > p.done);
      if (rewritten) continue;
      st.violation = `${rec.actor}: guest_read of gfn 0x${gfn.toString(16)} after ${p.actor}'s PUNCH_HOLE returned 0x${rec.value.toString(16)}, not zeros (stale data)`;
      return;
    }
  };
}

export interface ExploreRunOptions extends WorldOptions {
  bound: number;
  livenessBound?: number;
  observe?: Observation[];
  trace?: boolean;
  /** skip scheduled choices whose actor is not enabled (shrinking) instead of failing */
  lenient?: boolean;
  /**
   * Check the whole VM after every phase instead of the SPTEs of the phase's gfn range (and
   * the memslot rules only after memslot phases). Slower; the results are the same, which
   * the tests cross-check.
   */
  fullChecks?: boolean;
  /** called after every phase with the world as it is then (`ccmem report` draws each point of a run) */
  onPhase?: (p: PhaseReport) => void;
}

/** One phase of a run, as `ExploreRunOptions.onPhase` sees it right after the phase ran. */
export interface PhaseReport {
  world: World;
  /** the actor that ran (index into world.actors) */
  actor: number;
  /** scenario-wide index and op of the actor's step, and the phase of it that ran ("begin" for its first) */
  step: number;
  op: string;
  phase: string;
  /** invariant messages the checks after this phase found (observations included) */
  messages: readonly string[];
  /** the run's violation once one was found (at this phase or before) */
  violation: string | null;
}

/**
 * Run one schedule chosen by `choose` (or a fixed list) and check everything: on a new world,
 * or on `reused` put back to its state after the setup steps (not with `trace` or `onPhase`).
 */
export function runOnce(scenario: Scenario, choose: Chooser | readonly number[], opts: ExploreRunOptions, reused?: ReusedWorld): RunResult {
  const w = reused?.enabled && !opts.trace && !opts.onPhase ? reused.take() : null;
  if (w !== null) {
    try {
      return runWorld(w, scenario, choose, opts);
    } catch {
      // e.g. a step that adds a property to a sealed object of the recorded world (GraphSnapshot):
      // this run again and every later one get a new world, which reports whatever really throws
      // (a random or pct chooser draws anew for the rerun)
      reused!.disable();
    }
  }
  const world = new World(scenario, opts);
  try {
    return runWorld(world, scenario, choose, opts);
  } finally {
    // nothing of the world outlives the run (the result holds plain records and events)
    world.dispose();
  }
}

function runWorld(world: World, scenario: Scenario, choose: Chooser | readonly number[], opts: ExploreRunOptions): RunResult {
  const named = new Set((scenario.concurrent?.invariants ?? []).filter((x): x is string => typeof x === 'string'));
  const st: RunState = {
    world,
    fullChecks: opts.fullChecks === true,
    clock: 0,
    violation: null,
    observations: new Set(),
    observeRe: (opts.observe ?? []).map((o) => ({ name: o.name, re: new RegExp(o.pattern) })),
    named,
    steps: 0,
    messages: [],
    onPhase: opts.onPhase,
  };
  installDataCheck(st);
  reportInvariants(st, world.setupViolations);
  if (opts.trace) world.startTrace();
  const schedule: number[] = [];
  let sleepBlocked = false;
  // -3 from the chooser: the run is not wanted (another shard's subtree); stop at once
  let aborted = false;
  if (typeof choose === 'function') {
    for (let depth = 0; depth < opts.bound && st.violation === null; depth++) {
      const e = enabledMask(world);
      if (e === 0) break;
      const t = choose(e, depth, world);
      if (t < 0) {
        sleepBlocked = t === -2;
        aborted = t === -3;
        break;
      }
      schedule.push(t);
      runPhase(st, t);
    }
  } else {
    for (const t of choose) {
      if (st.violation !== null) break;
      const e = enabledMask(world);
      if (!(e & (1 << t))) {
        if (opts.lenient) continue;
        const name = world.actors[t]?.name ?? `#${t}`;
        throw new Error(`schedule step ${schedule.length}: actor ${name} cannot run here (${world.actors[t]?.finished ? 'finished' : 'spinning or unknown'})`);
      }
      schedule.push(t);
      runPhase(st, t);
    }
  }
  if (!sleepBlocked && !aborted && st.violation === null) complete(st, opts.livenessBound ?? 10_000);
  // the whole VM once more: the per-phase checks after ranged phases looked at their range only
  if (st.violation === null && !aborted) checkAfterPhase(st, CHECK_ALL);
  if (!sleepBlocked && !aborted) finalChecks(st, scenario);
  const events = opts.trace ? world.stopTrace() : [];
  let vendorFaults = 0;
  for (const r of world.records) vendorFaults += r.vendorFaults;
  return {
    schedule,
    violation: st.violation,
    steps: st.steps,
    observations: st.observations,
    vendorFaults,
    sleepBlocked,
    events,
    // a copy: a reused world's list is emptied for its next run
    records: world.records.slice(),
  };
}

/* ------------------------------------------------------------------------------------------ */
/* Schedules as text                                                                          */
/* ------------------------------------------------------------------------------------------ */

export function actorNames(scenario: Scenario): string[] {
  return Object.keys(scenario.concurrent?.actors ?? {});
}

export function formatSchedule(scenario: Scenario, schedule: readonly number[]): string {
  const names = actorNames(scenario);
  return schedule.map((i) => names[i] ?? String(i)).join('.');
}

/** "vmm.cpu0.cpu0" or "1.0.0" (actor indexes), or a JSON list of either */
export function parseSchedule(scenario: Scenario, text: string): number[] {
  const names = actorNames(scenario);
  const t = text.trim();
  if (t === '') return [];
  const parts: unknown[] = t.startsWith('[') ? (JSON.parse(t) as unknown[]) : t.split(/[.,\s]+/).filter(Boolean);
  return parts.map((p) => {
    const s = String(p);
    const byName = names.indexOf(s);
    if (byName >= 0) return byName;
    if (/^\d+$/.test(s) && Number(s) < names.length) return Number(s);
    throw new Error(`"${s}" is not an actor (actors: ${names.join(', ')})`);
  });
}

/* ------------------------------------------------------------------------------------------ */
/* Shrinking                                                                                  */
/* ------------------------------------------------------------------------------------------ */

/**
 * Delta debugging (ddmin) on the schedule: drop chunks of choices while the run still fails;
 * choices whose actor cannot run any more are skipped. Returns the schedule as it ran.
 */
export function shrinkSchedule(scenario: Scenario, schedule: readonly number[], opts: ExploreRunOptions, maxRuns = 3000): number[] {
  let runs = 0;
  const fails = (s: readonly number[]): number[] | null => {
    runs++;
    const r = runOnce(scenario, s, { ...opts, lenient: true, trace: false });
    return r.violation !== null ? r.schedule : null;
  };
  let cur = fails(schedule) ?? [...schedule];
  let n = 2;
  while (cur.length >= 1 && runs < maxRuns) {
    const chunk = Math.ceil(cur.length / n);
    let reduced = false;
    for (let i = 0; i < cur.length && runs < maxRuns; i += chunk) {
      const cand = [...cur.slice(0, i), ...cur.slice(i + chunk)];
      const ran = fails(cand);
      if (ran) {
        cur = ran;
        n = Math.max(n - 1, 2);
        reduced = true;
        break;
      }
    }
    if (!reduced) {
      if (chunk <= 1) break;
      n = Math.min(n * 2, cur.length);
    }
  }
  return cur;
}

/* ------------------------------------------------------------------------------------------ */
/* Exploration                                                                                */
/* ------------------------------------------------------------------------------------------ */

interface Node {
  enabled: number;
  sleep: number;
  chosen: number;
  /** each actor's next-phase footprint (null: finished) */
  fps: (Footprint | null)[];
  /** DPOR: actors still to try here (all enabled ones without DPOR) */
  backtrack: number;
}

function popcount(mask: number): number {
  let n = 0;
  for (let m = mask; m; m &= m - 1) n++;
  return n;
}

function lowestBit(mask: number): number {
  return 31 - Math.clz32(mask & -mask);
}

export function explore(scenario: Scenario, options: ExploreOptions = {}, name = scenario.name): ExploreReport {
  const mode = options.mode ?? 'exhaustive';
  const bound = options.bound ?? 64;
  const maxViolations = options.maxViolations ?? 1;
  const runOpts: ExploreRunOptions = {
    bound,
    ...(options.livenessBound !== undefined && { livenessBound: options.livenessBound }),
    ...(options.observe && { observe: options.observe }),
    ...(options.faultInjection && { faultInjection: options.faultInjection }),
    ...(options.tdxBusy && { tdxBusy: options.tdxBusy }),
    ...(options.fullChecks && { fullChecks: true }),
    ...(options.coarseFootprints && { coarseFootprints: true }),
  };
  const stats: ExploreStats = {
    steps: 0,
    elapsedMs: 0,
    stepsPerSecond: 0,
    sleepBlocked: 0,
    observations: {},
    vendorFaultRuns: 0,
    violatingRuns: 0,
    complete: false,
    stopReason: 'complete',
  };
  const found: number[][] = [];
  const messages: string[] = [];
  let schedules = 0;
  const t0 = performance.now();
  const deadline = options.timeLimitMs !== undefined ? t0 + options.timeLimitMs : Infinity;
  const onProgress = options.onProgress;
  const interval = options.progressIntervalMs ?? 1000;
  let nextProgress = t0 + interval;
  const progress = (frontier: number, done: boolean, now = performance.now()) => {
    if (!onProgress) return;
    const elapsedMs = now - t0;
    onProgress({
      schedules,
      steps: stats.steps,
      elapsedMs,
      stepsPerSecond: elapsedMs > 0 ? (stats.steps / elapsedMs) * 1000 : 0,
      frontier,
      violatingRuns: stats.violatingRuns,
      done,
    });
  };
  const record = (r: RunResult) => {
    options.onRun?.(r);
    schedules++;
    stats.steps += r.steps;
    if (r.sleepBlocked) stats.sleepBlocked++;
    if (r.vendorFaults > 0) stats.vendorFaultRuns++;
    for (const o of r.observations) stats.observations[o] = (stats.observations[o] ?? 0) + 1;
    if (r.violation !== null) {
      stats.violatingRuns++;
      found.push(r.schedule);
      messages.push(r.violation);
    }
  };
  // DPOR runs one scheduling point past the bound to see the state there (then stop)
  const dporRunOpts: ExploreRunOptions = { ...runOpts, bound: bound + 1 };
  /** a reason to stop before the search is done, or null */
  const stopNow = (cap: number, now: number): StopReason | null => {
    if (found.length >= maxViolations) return 'violations';
    if (schedules >= cap) return 'max-schedules';
    if (now > deadline) return 'time';
    return null;
  };

  let shard: ExploreReport['shard'];
  // every run of the search starts from the world the setup steps build: one world, reset
  // (an exception leaves it to the garbage collector instead of the buffer pools)
  const reused = options.freshWorlds ? undefined : new ReusedWorld(scenario, runOpts);
  if (mode === 'exhaustive') {
    const cap = options.schedules ?? Infinity;
    const sh = options.shard;
    if (sh) {
      if (!Number.isInteger(sh.count) || sh.count < 1 || !Number.isInteger(sh.index) || sh.index < 0 || sh.index >= sh.count) {
        throw new Error(`shard ${sh.index + 1}/${sh.count}: needs 1 <= K <= N`);
      }
      shard = { index: sh.index, count: sh.count, depth: sh.depth ?? SHARD_DEPTH };
      stats.skippedPrefixes = 0;
    }
    const splitDepth = shard?.depth ?? 0;
    const dpor = options.reduction !== 'sleep';
    // DPOR branches fully above the shard depth, sharded or not, so that the shards of a
    // partition add up to exactly the unsharded search
    const fullDepth = shard?.depth ?? SHARD_DEPTH;
    const stack: Node[] = [];
    // DPOR: the actors' next-phase footprints and enabled set where the run stopped branching
    let tail: { enabled: number; fps: (Footprint | null)[] } | null = null;
    let replayTo = 0; // stack depth whose choices are replayed
    let prefix = -1; // number of the current subtree (sharding)
    const frontier = () => {
      let n = 0;
      for (const node of stack) n += popcount(node.backtrack & node.enabled & ~node.sleep & ~(1 << node.chosen));
      return n;
    };
    for (;;) {
      const now = performance.now();
      const stop = stopNow(cap, now);
      if (stop) {
        stats.stopReason = stop;
        break;
      }
      if (now >= nextProgress) {
        nextProgress = now + interval;
        progress(frontier(), false, now);
      }
      // a run whose first splitDepth choices differ from the previous run's starts a new subtree
      if (replayTo <= splitDepth) prefix++;
      const owned = shard === undefined || prefix % shard.count === shard.index;
      let childSleep = 0;
      const r = runOnce(
        scenario,
        (enabled, depth, world) => {
          if (depth < replayTo) {
            const n = stack[depth]!;
            if (depth === replayTo - 1) childSleep = sleepAfter(n);
            return n.chosen;
          }
          if (!owned && depth >= splitDepth) return -3; // another shard's subtree
          const fps = world.actors.map((a) => (a.finished ? null : a.footprint()));
          if (depth >= bound) {
            // DPOR only (runOpts.bound is one more): the state at the bound, for its races
            tail = { enabled, fps };
            return -1;
          }
          const node: Node = { enabled, sleep: depth === 0 ? 0 : childSleep, chosen: -1, fps, backtrack: enabled };
          const choices = enabled & ~node.sleep;
          if (choices === 0) {
            tail = { enabled, fps };
            return -2; // every enabled actor sleeps: explored elsewhere
          }
          node.chosen = lowestBit(choices);
          // above the shard depth every enabled actor is tried (sleep sets only), so the tree
          // there does not depend on what the subtrees found and the partition stays exact
          if (dpor && depth >= fullDepth) node.backtrack = 1 << node.chosen;
          stack.length = depth;
          stack.push(node);
          childSleep = sleepAfter(node);
          return node.chosen;
        },
        dpor ? dporRunOpts : runOpts,
        reused,
      );
      // the run may have stopped (violation, all finished) before reaching the replay depth
      stack.length = Math.min(stack.length, Math.max(r.schedule.length, 0));
      if (dpor) {
        // a run stopped by a violation never showed the other actors' pending phases: its
        // nodes try every enabled actor (the search stops at the first violation by default)
        if (r.violation !== null) for (const n of stack) n.backtrack |= n.enabled;
        else addBacktracks(stack, tail);
        tail = null;
      }
      if (owned) record(r);
      else {
        stats.skippedPrefixes!++;
        // the skipped subtree is done: backtrack above it
        stack.length = Math.min(stack.length, splitDepth);
      }
      // backtrack
      let next = -1;
      while (stack.length > 0) {
        const top = stack[stack.length - 1]!;
        top.sleep |= 1 << top.chosen;
        const rem = top.backtrack & top.enabled & ~top.sleep;
        if (rem !== 0) {
          top.chosen = lowestBit(rem);
          next = stack.length;
          break;
        }
        stack.pop();
      }
      if (next < 0) {
        stats.complete = true;
        stats.stopReason = 'complete';
        break;
      }
      replayTo = next;
    }
  } else {
    const runs = options.schedules ?? 1000;
    const seed = options.seed ?? 1;
    const rnd = prng(seed);
    const n = actorNames(scenario).length;
    const d = Math.max(1, options.depth ?? 3);
    let k = 0;
    for (; k < runs; k++) {
      const now = performance.now();
      const stop = stopNow(Infinity, now);
      if (stop) {
        stats.stopReason = stop;
        break;
      }
      if (now >= nextProgress) {
        nextProgress = now + interval;
        progress(runs - k, false, now);
      }
      let chooser: Chooser;
      if (mode === 'random') {
        chooser = (enabled) => {
          const idx: number[] = [];
          for (let i = 0; i < n; i++) if (enabled & (1 << i)) idx.push(i);
          return idx[Math.floor(rnd() * idx.length)]!;
        };
      } else {
        // PCT: distinct initial priorities d..d+n-1, change points 1..d-1 at random depths
        const prio = Array.from({ length: n }, (_, i) => d + i);
        for (let i = n - 1; i > 0; i--) {
          const j = Math.floor(rnd() * (i + 1));
          [prio[i], prio[j]] = [prio[j]!, prio[i]!];
        }
        const change = new Map<number, number>();
        for (let c = 1; c < d; c++) change.set(Math.floor(rnd() * bound), c);
        chooser = (enabled, depth) => {
          let best = -1;
          for (let i = 0; i < n; i++) if (enabled & (1 << i) && (best < 0 || prio[i]! > prio[best]!)) best = i;
          const c = change.get(depth);
          if (c !== undefined && best >= 0) {
            prio[best] = c;
            best = -1;
            for (let i = 0; i < n; i++) if (enabled & (1 << i) && (best < 0 || prio[i]! > prio[best]!)) best = i;
          }
          return best;
        };
      }
      record(runOnce(scenario, chooser, runOpts, reused));
    }
    // complete only when every requested run ran (not stopped by the deadline or violations)
    stats.complete = k === runs;
    if (stats.complete) stats.stopReason = 'complete';
  }
  reused?.dispose();

  stats.elapsedMs = performance.now() - t0;
  stats.stepsPerSecond = stats.elapsedMs > 0 ? (stats.steps / stats.elapsedMs) * 1000 : 0;
  progress(0, true);

  const violations: ExploreViolation[] = found.map((s, i) => {
    const original = formatSchedule(scenario, s);
    const shrunk = i === 0 && options.shrink !== false ? shrinkSchedule(scenario, s, runOpts) : s;
    const replay = runOnce(scenario, shrunk, { ...runOpts, trace: true });
    return {
      schedule: formatSchedule(scenario, replay.schedule),
      violation: replay.violation ?? messages[i]!,
      events: replay.events,
      ...(original !== formatSchedule(scenario, replay.schedule) && { original }),
    };
  });
  return { name, mode, schedules, violations, pass: violations.length === 0, stats, ...(shard && { shard }) };

  function sleepAfter(node: Node): number {
    // sleepers that commute with the chosen phase stay asleep in the child
    const t = node.chosen;
    const ft = node.fps[t]!;
    let s = 0;
    let m = node.sleep & ~(1 << t);
    while (m) {
      const u = lowestBit(m);
      m &= m - 1;
      if (independent(node.fps[u]!, ft)) s |= 1 << u;
    }
    return s;
  }
}

/**
 * DPOR backtrack points of one run (Flanagan & Godefroid 2005, without the happens-before
 * filter, so a superset of theirs): for every step i of the path and every actor p whose next
 * phase at a later point j (a later step, or the state where the run stopped branching) is
 * dependent with step i, p is tried at i: itself if it was enabled there, else every enabled
 * actor. A step after which the enabled set changed other than by its own actor (a spinning
 * actor re-enabled, an actor blocked) makes its node branch fully: enabling is a dependence
 * the footprints do not show.
 */
function addBacktracks(stack: Node[], tail: { enabled: number; fps: (Footprint | null)[] } | null): void {
  const n = stack.length;
  for (let i = 0; i < n; i++) {
    const ni = stack[i]!;
    const a = ni.chosen;
    const fa = ni.fps[a]!;
    const nextEnabled = i + 1 < n ? stack[i + 1]!.enabled : tail?.enabled;
    if (nextEnabled !== undefined && (nextEnabled & ~(1 << a)) !== (ni.enabled & ~(1 << a))) {
      ni.backtrack |= ni.enabled;
      continue;
    }
    for (let j = i + 1; j <= n; j++) {
      const nj = j < n ? stack[j]! : tail;
      if (!nj) break;
      for (let p = 0; p < nj.fps.length; p++) {
        const fp = nj.fps[p];
        if (p === a || !fp || ni.backtrack & (1 << p)) continue;
        if (independent(fa, fp)) continue;
        ni.backtrack |= ni.enabled & (1 << p) ? 1 << p : ni.enabled;
      }
    }
  }
}

/** Rerun one schedule exactly, with its kernel events. */
export function replaySchedule(scenario: Scenario, schedule: string | readonly number[], options: ExploreOptions = {}): RunResult {
  const s = typeof schedule === 'string' ? parseSchedule(scenario, schedule) : schedule;
  return runOnce(scenario, s, {
    bound: s.length,
    trace: true,
    ...(options.livenessBound !== undefined && { livenessBound: options.livenessBound }),
    ...(options.observe && { observe: options.observe }),
    ...(options.faultInjection && { faultInjection: options.faultInjection }),
    ...(options.tdxBusy && { tdxBusy: options.tdxBusy }),
    ...(options.fullChecks && { fullChecks: true }),
  });
}
