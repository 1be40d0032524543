/**
 * Exploration files: a scenario file with a `concurrent:` block, optionally preceded by an
 * `explore:` mapping with the explorer's defaults and expectations (built-in explorations use
 * it; docs/explore.md). The rest of the file is validated exactly like any scenario file.
 */
import { readdirSync } from 'node:fs';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { LineCounter, isMap, isScalar, parseDocument } from 'yaml';
import { z } from 'zod';
import { DEFAULT_INPUT_LIMITS, ScenarioParseError, readScenarioText, readScenarioTextWithin, tryParseScenario, type InputLimits, type ScenarioError } from '../parse.js';
import type { Scenario } from '../schema.js';
import { missingVcpuRefs, validateForExplore, type ExploreOptions } from './engine.js';

const observeSchema = z.strictObject({ name: z.string(), pattern: z.string() });
const exploreHeader = z.strictObject({
  mode: z.enum(['exhaustive', 'random', 'pct']).optional(),
  bound: z.number().int().positive().optional(),
  seed: z.number().int().optional(),
  schedules: z.number().int().positive().optional(),
  depth: z.number().int().positive().optional(),
  liveness_bound: z.number().int().positive().optional(),
  observe: z.array(observeSchema).optional(),
  fault_injection: z.strictObject({ skip_retry_check: z.boolean().optional() }).optional(),
  tdx_busy: z.strictObject({ count: z.number().int().positive(), leaf: z.string().optional() }).optional(),
  /**
   * what the exploration is expected to find: `pass` (no violation), `violation` (any), or
   * `livelock` (a violation that is a livelock: an actor that cannot finish)
   */
  expect: z.enum(['pass', 'violation', 'livelock']).optional(),
});
export type ExploreHeader = z.output<typeof exploreHeader>;

export interface ExplorationFile {
  file: string;
  scenario: Scenario;
  header: ExploreHeader;
  /** the header as explorer options */
  options: ExploreOptions;
}

export type LoadResult = { ok: true; exploration: ExplorationFile } | { ok: false; errors: ScenarioError[] };

export function headerOptions(h: ExploreHeader): ExploreOptions {
  return {
    ...(h.mode !== undefined && { mode: h.mode }),
    ...(h.bound !== undefined && { bound: h.bound }),
    ...(h.seed !== undefined && { seed: h.seed }),
    ...(h.schedules !== undefined && { schedules: h.schedules }),
    ...(h.depth !== undefined && { depth: h.depth }),
    ...(h.liveness_bound !== undefined && { livenessBound: h.liveness_bound }),
    ...(h.observe && { observe: h.observe }),
    ...(h.fault_injection?.skip_retry_check !== undefined && { faultInjection: { skipRetryCheck: h.fault_injection.skip_retry_check } }),
    ...(h.tdx_busy && { tdxBusy: h.tdx_busy.leaf !== undefined ? { count: h.tdx_busy.count, leaf: h.tdx_busy.leaf } : { count: h.tdx_busy.count } }),
  };
}

/** Parse exploration text; never throws. */
export function parseExploration(text: string, file = '<input>', limits: InputLimits = {}): LoadResult {
  // the whole file is parsed as a scenario with its `explore:` key set aside, so every error
  // points at the line of the file itself
  const parsed = tryParseScenario(text, file, limits, { omitTopLevel: ['explore'] });
  if (!parsed.ok) return parsed;
  let header: ExploreHeader = {};
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, intAsBigInt: false, logLevel: 'error' });
  const root = doc.contents;
  const pair = isMap(root) ? root.items.find((p) => isScalar(p.key) && p.key.value === 'explore') : undefined;
  if (pair) {
    const raw: unknown = doc.toJS({ maxAliasCount: limits.maxAliasCount ?? DEFAULT_INPUT_LIMITS.maxAliasCount });
    const h = exploreHeader.safeParse((raw as Record<string, unknown>).explore);
    if (!h.success) {
      const at = lineCounter.linePos(nodeStart(pair.value) ?? nodeStart(pair.key) ?? 0);
      return { ok: false, errors: h.error.issues.map((i) => ({ file, line: at.line, column: at.col, field: ['explore', ...i.path].join('.'), message: i.message })) };
    }
    header = h.data;
  }
  const missing = missingVcpuRefs(parsed.scenario);
  if (missing.length) {
    return { ok: false, errors: missing.map((m) => ({ file, line: m.line ?? 1, column: 1, field: 'concurrent.actors', message: m.message })) };
  }
  const problems = validateForExplore(parsed.scenario);
  if (problems.length) {
    const conc = isMap(root) ? root.items.find((p) => isScalar(p.key) && p.key.value === 'concurrent') : undefined;
    const at = lineCounter.linePos(nodeStart(conc?.key) ?? 0);
    return { ok: false, errors: problems.map((message) => ({ file, line: at.line, column: at.col, field: 'concurrent', message })) };
  }
  return { ok: true, exploration: { file, scenario: parsed.scenario, header, options: headerOptions(header) } };
}

function nodeStart(node: unknown): number | undefined {
  return (node as { range?: readonly number[] } | null | undefined)?.range?.[0];
}

/** `loadExplorationFile` with the read bounded in time (`limits.readTimeoutMs`, default 10 s) */
export async function loadExplorationFileWithin(file: string, limits: InputLimits = {}): Promise<LoadResult & { text?: string }> {
  let text: string;
  try {
    text = await readScenarioTextWithin(file, limits);
  } catch (e) {
    if (e instanceof ScenarioParseError) return { ok: false, errors: [...e.errors] };
    throw e;
  }
  return { ...parseExploration(text, file, limits), text };
}

/** Read (synchronously, without a time bound: the built-in files) and parse an exploration file. */
export function loadExplorationFile(file: string, limits: InputLimits = {}): LoadResult {
  let text: string;
  try {
    text = readScenarioText(file, limits);
  } catch (e) {
    if (e instanceof ScenarioParseError) return { ok: false, errors: [...e.errors] };
    throw e;
  }
  return parseExploration(text, file, limits);
}

/** `<package>/explorations` */
export function builtinExplorationDir(): string {
  return fileURLToPath(new URL('../../explorations/', import.meta.url));
}

/** names of the built-in explorations (file names without .yaml) */
export function builtinExplorationNames(): string[] {
  return readdirSync(builtinExplorationDir())
    .filter((f) => f.endsWith('.yaml'))
    .map((f) => basename(f, '.yaml'))
    .sort();
}

export function loadBuiltinExploration(name: string): LoadResult {
  if (!builtinExplorationNames().includes(name)) {
    return {
      ok: false,
      errors: [{ file: name, line: 1, column: 1, field: '', message: `no built-in exploration "${name}" (known: ${builtinExplorationNames().join(', ')})` }],
    };
  }
  return loadExplorationFile(join(builtinExplorationDir(), `${name}.yaml`));
}
