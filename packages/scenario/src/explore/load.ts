/**
 * Exploration files: a scenario file with a `concurrent:` block, optionally preceded by an
 * `explore:` mapping with the explorer's defaults and expectations (built-in explorations use
 * it; docs/explore.md). The rest of the file is validated exactly like any scenario file.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseDocument, stringify } from 'yaml';
import { z } from 'zod';
import { tryParseScenario, type ScenarioError } from '../parse.js';
import type { Scenario } from '../schema.js';
import { validateForExplore, type ExploreOptions } from './engine.js';

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
export function parseExploration(text: string, file = '<input>'): LoadResult {
  const doc = parseDocument(text);
  let header: ExploreHeader = {};
  let body = text;
  const raw = doc.errors.length === 0 ? (doc.toJS() as unknown) : null;
  if (raw && typeof raw === 'object' && !Array.isArray(raw) && 'explore' in raw) {
    const { explore, ...rest } = raw as Record<string, unknown>;
    const h = exploreHeader.safeParse(explore);
    if (!h.success) {
      return { ok: false, errors: h.error.issues.map((i) => ({ file, line: 1, column: 1, field: ['explore', ...i.path].join('.'), message: i.message })) };
    }
    header = h.data;
    body = stringify(rest);
  }
  const parsed = tryParseScenario(body, file);
  if (!parsed.ok) return parsed;
  const problems = validateForExplore(parsed.scenario);
  if (problems.length) return { ok: false, errors: problems.map((message) => ({ file, line: 1, column: 1, field: 'concurrent', message })) };
  return { ok: true, exploration: { file, scenario: parsed.scenario, header, options: headerOptions(header) } };
}

export function loadExplorationFile(file: string): LoadResult {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    return { ok: false, errors: [{ file, line: 1, column: 1, field: '', message: `cannot read: ${(e as Error).message}` }] };
  }
  return parseExploration(text, file);
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
