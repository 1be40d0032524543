/**
 * Long random campaigns (`ccmem fuzz`). Sequences of random steps (generate.ts) run either on
 * the model and on the real kernel, compared step by step (`diff`), or on the model alone with
 * its invariant checker after every step (`model`). Each failure is shrunk by fast-check to a
 * short sequence and kept as a scenario file; failures with the same first symptom are kept
 * once. The campaign stops at a step budget or a time limit, whichever comes first.
 */
import fc from 'fast-check';
import { diffScenario } from '../differential.js';
import { runScenario } from '../runner.js';
import type { Scenario } from '../schema.js';
import type { Target } from '../target.js';
import { fuzzCaseArb, fuzzScenario, scenarioToYaml, type FuzzFeatures } from './generate.js';

export type FuzzMode = 'diff' | 'model';

export interface FuzzFinding {
  /** the first symptom, used to keep one finding per kind: `step 4 guest_read: value: 0x1 vs 0x2` */
  symptom: string;
  /** every symptom of the shrunk sequence */
  details: string[];
  /** the shrunk sequence as a scenario file */
  yaml: string;
  /** the seed of the fast-check run that found it */
  seed: number;
}

export interface FuzzProgress {
  sequences: number;
  steps: number;
  findings: number;
  elapsedMs: number;
}

export interface FuzzOptions {
  mode: FuzzMode;
  model: Target;
  /** the real-KVM target (mode `diff`) */
  kvm?: Target;
  features: FuzzFeatures;
  /** stop after this many steps (setup steps included) */
  steps: number;
  seed: number;
  /** stop after this many milliseconds */
  timeMs?: number;
  /** steps per sequence at most (default 24) */
  maxLength?: number;
  onProgress?(p: FuzzProgress): void;
  onFinding?(f: FuzzFinding): void;
}

export interface FuzzSummary extends FuzzProgress {
  mode: FuzzMode;
  seed: number;
  /** the step budget was spent (false: the time limit ended it first) */
  complete: boolean;
  findings: number;
  found: FuzzFinding[];
}

/** why one sequence failed, or [] when it passed */
function failures(mode: FuzzMode, sc: Scenario, model: Target, kvm: Target | undefined): string[] {
  if (mode === 'diff') {
    const d = diffScenario(sc, model, kvm!);
    return d.differences.map((x) => `step ${x.index} ${x.op}: ${x.fields.join('; ')}`);
  }
  const r = runScenario(sc, model);
  const out: string[] = [];
  if (r.error !== undefined) out.push(`the model failed: ${r.error}`);
  for (const s of r.steps) {
    const inv = s.outcome.detail?.invariants;
    if (Array.isArray(inv) && inv.length) out.push(`step ${s.index} ${s.op}: invariant violated: ${inv.join('; ')}`);
  }
  return out;
}

/** runs per fast-check call: the unit the step and time budgets are checked at */
const CHUNK = 64;

export function runFuzzCampaign(opts: FuzzOptions): FuzzSummary {
  if (opts.mode === 'diff' && !opts.kvm) throw new Error('fuzz: the diff mode needs the real-KVM target');
  const start = Date.now();
  const progress: FuzzProgress = { sequences: 0, steps: 0, findings: 0, elapsedMs: 0 };
  const found: FuzzFinding[] = [];
  const symptoms = new Set<string>();
  const arb = fuzzCaseArb(opts.features, opts.maxLength ?? 24);
  let chunk = 0;
  const outOfTime = () => opts.timeMs !== undefined && Date.now() - start >= opts.timeMs;
  while (progress.steps < opts.steps && !outOfTime()) {
    const seed = (opts.seed + chunk++ * 0x9e37) | 0;
    let counting = true;
    const details = fc.check(
      fc.property(arb, ({ ops, gmemFlags }) => {
        const sc = fuzzScenario(ops, gmemFlags, opts.features);
        if (counting) {
          progress.sequences++;
          progress.steps += sc.steps.length;
        }
        const why = failures(opts.mode, sc, opts.model, opts.kvm);
        // once a run failed, fast-check shrinks: those runs are not part of the campaign's count
        if (why.length) counting = false;
        return why.length === 0;
      }),
      { seed, numRuns: CHUNK },
    );
    if (details.failed && details.counterexample) {
      const [{ ops, gmemFlags }] = details.counterexample;
      const sc = fuzzScenario(ops, gmemFlags, opts.features);
      const why = failures(opts.mode, sc, opts.model, opts.kvm);
      const symptom = (why[0] ?? 'failed').replace(/^step \d+ /, '');
      if (!symptoms.has(symptom)) {
        symptoms.add(symptom);
        const f: FuzzFinding = {
          symptom,
          details: why,
          seed,
          yaml: scenarioToYaml(
            { ...sc, name: `fuzz ${opts.mode} finding (seed ${seed})` },
            `found by ccmem fuzz --target ${opts.mode} --seed ${opts.seed}\n${why.join('\n')}`,
          ),
        };
        found.push(f);
        progress.findings = found.length;
        opts.onFinding?.(f);
      }
    }
    progress.elapsedMs = Date.now() - start;
    opts.onProgress?.({ ...progress });
  }
  progress.elapsedMs = Date.now() - start;
  return { ...progress, mode: opts.mode, seed: opts.seed, complete: progress.steps >= opts.steps, findings: found.length, found };
}
