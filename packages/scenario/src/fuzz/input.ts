/**
 * Fuzzing the scenario reader and the runner (`ccmem fuzz --target input`): random scenario
 * text — valid random scenarios, the same with hostile mutations (field values at and beyond
 * their widths, non-integers, names, aliases, deleted / duplicated / swapped lines, truncation,
 * flipped bytes), hostile steps of every op, and arbitrary text — is read and, when valid, run
 * on the model. Each input must end as `ccmem run` would exit: 2 (an invalid file, every error
 * located), or 0 / 1 (it ran); never by an exception escaping the reader or the runner, and with
 * the process's memory under a bound. Anything else is a finding, kept with the input.
 */
import fc from 'fast-check';
import { tryParseScenario } from '../parse.js';
import { runScenario } from '../runner.js';
import { OP_NAMES } from '../schema.js';
import type { Target } from '../target.js';
import { fuzzCaseArb, fuzzScenario, scenarioToYaml, type FuzzFeatures } from './generate.js';

/** values of every kind a field may be given: edges of each width, non-integers, names, junk */
export const HOSTILE_VALUES = [
  '0', '1', '-1', '1.5', '8.5', '-0', '0x10000', '0xffff', '0x1_0000', '0xffff_ffff', '0x1_0000_0000', '0x1_0000_0008',
  '0x7fff_ffff_ffff_ffff', '0xffff_ffff_ffff_f000', '0xffff_ffff_ffff_ffff', '0x1_0000_0000_0000_0000', '9007199254740993',
  '4KiB', '2MiB', '1GiB', '1TiB', '8TiB', '0x7fff_ffff_f000', '2147483647', '4294967295', '.nan', '.inf', '-.inf', 'null', '~',
  '"1"', '"0x1000"', "'4KiB'", 'true', '[]', '[1, 2]', '{}', '{ a: 1 }', 'ram', 'ram+1TiB', 'ram-4KiB', 'gmem', 'nosuchname',
  '[KVM_MEM_LOG_DIRTY_PAGES]', '[KVM_MEM_GUEST_MEMFD, KVM_MEM_READONLY]', '[KVM_MEMORY_ATTRIBUTE_PRIVATE]', 'KVM_CAP_USER_MEMORY2',
  '[KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE, KVM_DIRTY_LOG_INITIALLY_SET]', '[NO_SUCH_FLAG]', '*nosuchalias', '&anchor 3', '!!binary AAAA',
  '"\\u0000"', `"${'x'.repeat(300)}"`,
];

const FIELDS = [
  'slot', 'as_id', 'flags', 'guest_phys_addr', 'memory_size', 'userspace_addr', 'guest_memfd', 'guest_memfd_offset', 'size', 'addr',
  'value', 'gpa', 'vcpu', 'id', 'fd', 'offset', 'len', 'mode', 'address', 'attributes', 'first_page', 'num_pages', 'cap', 'args',
  'prot', 'data', 'ret', 'npages', 'dirty_bitmap', 'gva', 'what',
];

const valueArb = fc.constantFrom(...HOSTILE_VALUES);

/** one step of a random op with random fields and hostile values (mostly refused, sometimes run) */
const hostileStepArb = fc
  .record({
    op: fc.constantFrom(...OP_NAMES),
    fields: fc.uniqueArray(fc.tuple(fc.constantFrom(...FIELDS), valueArb), { maxLength: 6, selector: ([k]) => k }),
    as: fc.option(fc.constantFrom('ram', 'gmem', 'cpu'), { nil: undefined }),
    expect: fc.option(fc.constantFrom('ok', '{ errno: EINVAL }', '{ value: 0 }', '{ signal: SIGSEGV }', '{ nonsense: 1 }'), { nil: undefined }),
  })
  .map(({ op, fields, as, expect }) => {
    const args = fields.map(([k, v]) => `${k}: ${v}`).join(', ');
    return `  - ${op}: { ${args} }${as ? `\n    as: ${as}` : ''}${expect ? `\n    expect: ${expect}` : ''}`;
  });

type Mutation =
  | { k: 'number'; at: number; value: string }
  | { k: 'dropLine'; at: number }
  | { k: 'dupLine'; at: number }
  | { k: 'swapLines'; a: number; b: number }
  | { k: 'insertStep'; at: number; step: string }
  | { k: 'truncate'; at: number }
  | { k: 'flip'; at: number; ch: string };

const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ k: fc.constant('number' as const), at: fc.nat(), value: valueArb }) },
  fc.record({ k: fc.constant('dropLine' as const), at: fc.nat() }),
  fc.record({ k: fc.constant('dupLine' as const), at: fc.nat() }),
  fc.record({ k: fc.constant('swapLines' as const), a: fc.nat(), b: fc.nat() }),
  { weight: 3, arbitrary: fc.record({ k: fc.constant('insertStep' as const), at: fc.nat(), step: hostileStepArb }) },
  fc.record({ k: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ k: fc.constant('flip' as const), at: fc.nat(), ch: fc.constantFrom(':', '{', '}', '[', ']', '-', ' ', '\n', '&', '*', '!', '"', "'", '#', '\t', '|', '>', '%', '@', '`') }),
);

const NUMBER_RE = /-?(?:0x[0-9a-fA-F_]+|\d[\d_]*)(?:\s?[KMGT]iB)?/g;

export function mutate(text: string, m: Mutation): string {
  const lines = text.split('\n');
  const line = (i: number) => i % Math.max(lines.length, 1);
  switch (m.k) {
    case 'number': {
      const spots = [...text.matchAll(NUMBER_RE)];
      if (spots.length === 0) return text;
      const s = spots[m.at % spots.length]!;
      return text.slice(0, s.index) + m.value + text.slice(s.index + s[0].length);
    }
    case 'dropLine':
      lines.splice(line(m.at), 1);
      return lines.join('\n');
    case 'dupLine':
      lines.splice(line(m.at), 0, lines[line(m.at)] ?? '');
      return lines.join('\n');
    case 'swapLines': {
      const a = line(m.a);
      const b = line(m.b);
      [lines[a], lines[b]] = [lines[b]!, lines[a]!];
      return lines.join('\n');
    }
    case 'insertStep': {
      // after the `steps:` line, at a random step boundary
      const first = lines.findIndex((l) => l.startsWith('steps:'));
      if (first < 0) return `${text}\n${m.step}\n`;
      const starts = lines.map((l, i) => (i > first && l.startsWith('  - ') ? i : -1)).filter((i) => i >= 0);
      const at = starts.length ? starts[m.at % starts.length]! : lines.length;
      lines.splice(at, 0, ...m.step.split('\n'));
      return lines.join('\n');
    }
    case 'truncate':
      return text.slice(0, m.at % (text.length + 1));
    case 'flip': {
      const at = m.at % (text.length + 1);
      return text.slice(0, at) + m.ch + text.slice(at + 1);
    }
  }
}

const HEADS = [
  'name: hostile\nvm: { type: default }\nsteps:\n',
  'name: hostile\nvm: { type: sw-protected }\nsteps:\n  - mmap: { size: 2MiB }\n    as: ram\n  - create_guest_memfd: { size: 2MiB }\n    as: gmem\n',
  'name: hostile\nvm: { type: sw-protected, profile: upstream-shadow }\nsteps:\n  - mmap: { size: 1TiB }\n    as: ram\n  - create_vcpu: { id: 0 }\n    as: cpu\n',
];

/** random scenario text, from valid to hostile to junk */
export function scenarioTextArb(features: FuzzFeatures, maxLength = 4): fc.Arbitrary<string> {
  const valid = fuzzCaseArb(features, maxLength).map(({ ops, gmemFlags }) => scenarioToYaml(fuzzScenario(ops, gmemFlags, features)));
  const hostile = fc
    .tuple(fc.constantFrom(...HEADS), fc.array(hostileStepArb, { minLength: 1, maxLength }))
    .map(([head, steps]) => `${head}${steps.join('\n')}\n`);
  const mutated = fc
    .tuple(fc.oneof(valid, hostile), fc.array(mutationArb, { minLength: 1, maxLength: 4 }))
    .map(([text, ms]) => ms.reduce(mutate, text));
  const junk = fc.oneof(
    fc.string({ maxLength: 200 }),
    fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v)),
    fc.array(fc.constantFrom('name:', 'vm:', 'steps:', '- ', '{', '}', '[', ']', ':', ' ', '\n', '&a', '*a', 'x', '0x10', '!!str', '<<: *a', '---', '...'), { maxLength: 60 }).map((a) => a.join('')),
  );
  return fc.oneof({ weight: 2, arbitrary: valid }, { weight: 4, arbitrary: mutated }, { weight: 3, arbitrary: hostile }, { weight: 1, arbitrary: junk });
}

/** what reading and running one text did, as `ccmem run` would exit */
export interface InputVerdict {
  code: 0 | 1 | 2;
  /** why this input is a finding (an escaped exception, an unlocated error, ...) */
  problem?: string;
  steps: number;
}

/** read `text` and run it on `model` as `ccmem run` would; never throws */
export function checkScenarioText(text: string, model: Target): InputVerdict {
  let parsed;
  try {
    parsed = tryParseScenario(text, 'fuzz.yaml');
  } catch (e) {
    return { code: 2, steps: 0, problem: `the reader threw: ${describe(e)}` };
  }
  if (!parsed.ok) {
    const bad = parsed.errors.find((e) => !(Number.isInteger(e.line) && e.line >= 1 && Number.isInteger(e.column) && e.column >= 1) || !e.message);
    if (parsed.errors.length === 0) return { code: 2, steps: 0, problem: 'the reader refused the file without an error' };
    if (bad) return { code: 2, steps: 0, problem: `an unlocated error: ${JSON.stringify(bad)}` };
    return { code: 2, steps: 0 };
  }
  try {
    const r = runScenario(parsed.scenario, model);
    return { code: r.pass ? 0 : 1, steps: r.steps.length };
  } catch (e) {
    return { code: 1, steps: 0, problem: `the runner threw: ${describe(e)}` };
  }
}

function describe(e: unknown): string {
  return e instanceof Error ? `${e.name}: ${e.message}` : String(e);
}

export interface InputFuzzFinding {
  problem: string;
  /** the input (shrunk when the problem was an exception) */
  text: string;
  seed: number;
}

export interface InputFuzzOptions {
  model: Target;
  features: FuzzFeatures;
  /** stop after this many inputs */
  inputs: number;
  seed: number;
  timeMs?: number;
  /** a finding when the process's resident memory exceeds this (default 2 GiB) */
  rssLimitBytes?: number;
  onProgress?(p: InputFuzzProgress): void;
  onFinding?(f: InputFuzzFinding): void;
}

export interface InputFuzzProgress {
  inputs: number;
  /** inputs read as a scenario and run */
  ran: number;
  /** by exit code */
  codes: { 0: number; 1: number; 2: number };
  /** steps run in total */
  steps: number;
  findings: number;
  /** the largest resident memory seen, in bytes */
  peakRss: number;
  elapsedMs: number;
}

export interface InputFuzzSummary extends InputFuzzProgress {
  seed: number;
  complete: boolean;
  found: InputFuzzFinding[];
}

const CHUNK = 256;

export function runInputFuzzCampaign(opts: InputFuzzOptions): InputFuzzSummary {
  const start = Date.now();
  const rssLimit = opts.rssLimitBytes ?? 2 * 2 ** 30;
  const p: InputFuzzProgress = { inputs: 0, ran: 0, codes: { 0: 0, 1: 0, 2: 0 }, steps: 0, findings: 0, peakRss: process.memoryUsage.rss(), elapsedMs: 0 };
  const found: InputFuzzFinding[] = [];
  const seen = new Set<string>();
  const arb = scenarioTextArb(opts.features);
  const outOfTime = () => opts.timeMs !== undefined && Date.now() - start >= opts.timeMs;
  const note = (problem: string, text: string, seed: number) => {
    const kind = problem.replace(/0x[0-9a-f]+|\d+/g, 'N').slice(0, 160);
    if (seen.has(kind)) return;
    seen.add(kind);
    const f = { problem, text, seed };
    found.push(f);
    p.findings = found.length;
    opts.onFinding?.(f);
  };
  let chunk = 0;
  while (p.inputs < opts.inputs && !outOfTime()) {
    const seed = (opts.seed + chunk++ * 0x9e37) | 0;
    const runs = Math.min(CHUNK, opts.inputs - p.inputs);
    let counting = true;
    const details = fc.check(
      fc.property(arb, (text) => {
        const v = checkScenarioText(text, opts.model);
        if (counting) {
          p.inputs++;
          p.codes[v.code]++;
          p.steps += v.steps;
          if (v.code !== 2) p.ran++;
          // (reading the RSS costs as much as a small input: every 16th input, and after every run)
          if (v.code !== 2 || p.inputs % 16 === 0) {
            const rss = process.memoryUsage.rss();
            if (rss > p.peakRss) p.peakRss = rss;
            if (rss > rssLimit) note(`resident memory ${rss} bytes is over the bound of ${rssLimit}`, text, seed);
          }
        }
        if (v.problem) counting = false;
        return v.problem === undefined;
      }),
      { seed, numRuns: runs },
    );
    if (details.failed && details.counterexample) {
      const [text] = details.counterexample;
      note(checkScenarioText(text, opts.model).problem ?? 'failed', text, seed);
    }
    p.elapsedMs = Date.now() - start;
    opts.onProgress?.({ ...p, codes: { ...p.codes } });
  }
  p.elapsedMs = Date.now() - start;
  return { ...p, seed: opts.seed, complete: p.inputs >= opts.inputs, found };
}
