/**
 * Reading scenario files: YAML with node positions, validated by the zod schema. Every problem
 * becomes a ScenarioError naming the file, line, column and field (`ccmem` exits with 2).
 */
import { closeSync, fstatSync, openSync, readSync, statSync, constants as fsConstants } from 'node:fs';
import { LineCounter, isMap, isPair, isScalar, isSeq, parseDocument, visit, type Document, type Node } from 'yaml';
import type { z } from 'zod';
import { DEFAULT_READ_TIMEOUT_MS, readFilesBounded } from './read-file.js';
import { isOpName, scenarioSchema, type Scenario, type Step } from './schema.js';

/** One problem in a scenario file. `line` and `column` are 1-based. */
export interface ScenarioError {
  readonly file: string;
  readonly line: number;
  readonly column: number;
  /** dotted path of the field, e.g. `steps[3].set_user_memory_region2.slot`; '' for the file */
  readonly field: string;
  readonly message: string;
}

/** Thrown by `parseScenario` / `loadScenarioFile`: the file is not a valid scenario. */
export class ScenarioParseError extends Error {
  readonly errors: readonly ScenarioError[];
  constructor(errors: readonly ScenarioError[]) {
    super(errors.map(formatScenarioError).join('\n'));
    this.name = 'ScenarioParseError';
    this.errors = errors;
  }
}

export function formatScenarioError(e: ScenarioError): string {
  return `${e.file}:${e.line}:${e.column}: ${e.field ? `${e.field}: ` : ''}${e.message}`;
}

export type ParseResult = { ok: true; scenario: Scenario } | { ok: false; errors: ScenarioError[] };

/**
 * What a scenario file may cost before it is refused with a clear error (docs/scenarios.md,
 * "Limits"); `ccmem run --max-steps / --max-file-size` override the defaults.
 */
export interface InputLimits {
  /** bytes of the file (default DEFAULT_INPUT_LIMITS.maxFileBytes) */
  maxFileBytes?: number;
  /** steps, `concurrent:` actors' steps included */
  maxSteps?: number;
  /** nodes YAML aliases may expand to (the `yaml` library's maxAliasCount) */
  maxAliasCount?: number;
  /**
   * milliseconds reading the file may take (`loadScenarioFileWithin`, `ccmem --read-timeout`):
   * a file on a hung network or FUSE mount is an error, not a hang
   */
  readTimeoutMs?: number;
}

export const DEFAULT_INPUT_LIMITS: Required<InputLimits> = {
  maxFileBytes: 16 * 1024 * 1024,
  maxSteps: 100_000,
  maxAliasCount: 10_000,
  readTimeoutMs: DEFAULT_READ_TIMEOUT_MS,
};

/** Parse and validate scenario text; never throws. */
export function tryParseScenario(
  text: string,
  file = '<input>',
  limits: InputLimits = {},
  /** top-level keys another reader owns (an exploration's `explore:`), left out of the scenario */
  opts: { omitTopLevel?: readonly string[] } = {},
): ParseResult {
  const lim = { ...DEFAULT_INPUT_LIMITS, ...limits };
  const lineCounter = new LineCounter();
  // (logLevel error: the yaml library's warnings, e.g. on a collection used as a map key, would go to
  // stderr; the schema reports such a file)
  const doc = parseDocument(text, { lineCounter, intAsBigInt: true, uniqueKeys: true, prettyErrors: false, logLevel: 'error' });
  const at = (offset: number) => {
    const p = lineCounter.linePos(offset);
    return { line: p.line, column: p.col };
  };

  if (doc.errors.length > 0) {
    return {
      ok: false,
      errors: doc.errors.map((err) => {
        const key = err.code === 'DUPLICATE_KEY' ? duplicateKeyPath(doc, err.pos[0]) : null;
        return {
          file,
          ...at(err.pos[0]),
          field: key ? formatPath(key) : '',
          message: err.code === 'DUPLICATE_KEY' ? 'duplicate key (map keys must be unique)' : firstLine(err.message),
        };
      }),
    };
  }
  if (doc.contents === null) {
    return { ok: false, errors: [{ file, line: 1, column: 1, field: '', message: 'empty file: a scenario needs name, vm and steps' }] };
  }

  const tooMany = stepCountError(doc, lim.maxSteps);
  if (tooMany) return { ok: false, errors: [{ file, ...at(tooMany.offset), field: tooMany.field, message: tooMany.message }] };

  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: lim.maxAliasCount });
  } catch (e) {
    // the yaml library's guard against alias expansion (a "billion laughs" file): located at
    // the first alias
    let offset = 0;
    visit(doc, {
      Alias(_key, node) {
        offset = node.range?.[0] ?? 0;
        return visit.BREAK;
      },
    });
    const why = e instanceof ReferenceError ? `aliases expand to more than ${lim.maxAliasCount} nodes` : firstLine((e as Error).message);
    return { ok: false, errors: [{ file, ...at(offset), field: '', message: `YAML ${why}` }] };
  }
  if (opts.omitTopLevel && data && typeof data === 'object') for (const k of opts.omitTopLevel) delete (data as Record<string, unknown>)[k];
  const parsed = scenarioSchema.safeParse(data);
  if (!parsed.success) {
    const errors = parsed.error.issues.flatMap((issue) => issueToErrors(issue, doc, file, at));
    errors.sort((a, b) => a.line - b.line || a.column - b.column);
    // an unknown op already explains why the step has no operation
    const noOp = (e: ScenarioError) =>
      e.message.startsWith('a step needs one operation') && errors.some((o) => o.field.startsWith(`${e.field}.`));
    return { ok: false, errors: dedupe(errors.filter((e) => !noOp(e))) };
  }
  const scenario = parsed.data as Scenario;
  annotateLines(scenario.steps, ['steps'], doc, at);
  if (scenario.concurrent) {
    for (const [actor, steps] of Object.entries(scenario.concurrent.actors)) {
      annotateLines(steps, ['concurrent', 'actors', actor], doc, at);
    }
  }
  return { ok: true, scenario };
}

/** Parse and validate scenario text; throws ScenarioParseError. */
export function parseScenario(text: string, file = '<input>'): Scenario {
  const r = tryParseScenario(text, file);
  if (!r.ok) throw new ScenarioParseError(r.errors);
  return r.scenario;
}

/**
 * Read, parse and validate a scenario file; throws ScenarioParseError (also for unreadable
 * files, files that are not regular files — a FIFO, /dev/zero — and files over the size limit).
 * The read is synchronous and has no time bound (the built-in files are read so); a file a
 * user names is better read by `loadScenarioFileWithin`.
 */
export function loadScenarioFile(path: string, limits: InputLimits = {}): Scenario {
  const text = readScenarioText(path, limits);
  const r = tryParseScenario(text, path, limits);
  if (!r.ok) throw new ScenarioParseError(r.errors);
  return r.scenario;
}

/**
 * `loadScenarioFile` with the read bounded in time (`limits.readTimeoutMs`, default 10 s; in a
 * child process, read-file.ts): a file on a hung mount is a ScenarioParseError at line 1.
 */
export async function loadScenarioFileWithin(path: string, limits: InputLimits = {}): Promise<Scenario> {
  const text = await readScenarioTextWithin(path, limits);
  const r = tryParseScenario(text, path, limits);
  if (!r.ok) throw new ScenarioParseError(r.errors);
  return r.scenario;
}

/** `readScenarioText` bounded in time; throws ScenarioParseError */
export async function readScenarioTextWithin(path: string, limits: InputLimits = {}): Promise<string> {
  const [r] = await readScenarioTextsWithin([path], limits);
  if ('errors' in r!) throw new ScenarioParseError(r.errors);
  return r!.text;
}

/**
 * The texts of scenario files, read one after the other by one child process, each within
 * `limits.readTimeoutMs` (read-file.ts), with `readScenarioText`'s refusals (non-regular files,
 * the size limit); a file that could not be read has its error at line 1.
 */
export async function readScenarioTextsWithin(
  paths: readonly string[],
  limits: InputLimits = {},
): Promise<({ path: string; text: string } | { path: string; errors: ScenarioError[] })[]> {
  const results = await readFilesBounded(paths, {
    maxBytes: limits.maxFileBytes ?? DEFAULT_INPUT_LIMITS.maxFileBytes,
    timeoutMs: limits.readTimeoutMs ?? DEFAULT_INPUT_LIMITS.readTimeoutMs,
    regularOnly: true,
    sizeOption: '--max-file-size',
    timeoutOption: '--read-timeout',
  });
  return results.map((r) => {
    if ('text' in r) return r;
    const message = r.error === 'is a directory' ? 'is a directory, not a scenario file' : r.error;
    return { path: r.path, errors: [{ file: r.path, line: 1, column: 1, field: '', message }] };
  });
}

/**
 * The text of a scenario file, or ScenarioParseError: only a regular file is read (a FIFO
 * without a writer would block forever, /dev/zero never ends), never more than the size limit.
 */
export function readScenarioText(path: string, limits: InputLimits = {}): string {
  const max = limits.maxFileBytes ?? DEFAULT_INPUT_LIMITS.maxFileBytes;
  const refuse = (message: string): never => {
    throw new ScenarioParseError([{ file: path, line: 1, column: 1, field: '', message }]);
  };
  let fd: number;
  try {
    // stat before open: opening a FIFO for reading blocks until a writer comes
    const st = statSync(path);
    if (st.isDirectory()) refuse('is a directory, not a scenario file');
    if (!st.isFile()) refuse('not a regular file (a FIFO, socket or device is never read)');
    fd = openSync(path, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK);
  } catch (e) {
    if (e instanceof ScenarioParseError) throw e;
    return refuse(`cannot read file (${(e as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) refuse('not a regular file (a FIFO, socket or device is never read)');
    if (st.size > max) refuse(`the file is ${st.size} bytes, more than the limit of ${max} (--max-file-size)`);
    // read at most max + 1 bytes: a file that grows while it is read is still bounded
    const buf = Buffer.alloc(Math.min(st.size, max) + 1);
    let n = 0;
    for (;;) {
      const got = readSync(fd, buf, n, buf.length - n, null);
      if (got === 0) break;
      n += got;
      if (n > max) refuse(`the file is more than the limit of ${max} bytes (--max-file-size)`);
      if (n === buf.length) break;
    }
    return buf.subarray(0, n).toString('utf8');
  } catch (e) {
    if (e instanceof ScenarioParseError) throw e;
    return refuse(`cannot read file (${(e as NodeJS.ErrnoException).code ?? 'error'})`);
  } finally {
    closeSync(fd);
  }
}

/** a located error when the document has more steps than `max` (counted before validation) */
function stepCountError(doc: Document, max: number): { offset: number; field: string; message: string } | null {
  const root = doc.contents;
  if (!isMap(root)) return null;
  let total = 0;
  let where: { offset: number; field: string } | null = null;
  const count = (node: unknown, field: string) => {
    if (!isSeq(node)) return;
    total += node.items.length;
    if (total > max && where === null) where = { offset: rangeStart(node.items[node.items.length - (total - max)]) ?? 0, field };
  };
  const steps = root.items.find((p) => scalarKey(p.key) === 'steps');
  count(steps?.value, 'steps');
  const conc = root.items.find((p) => scalarKey(p.key) === 'concurrent')?.value;
  const actors = isMap(conc) ? conc.items.find((p) => scalarKey(p.key) === 'actors')?.value : undefined;
  if (isMap(actors)) for (const a of actors.items) count(a.value, `concurrent.actors.${scalarKey(a.key) ?? '?'}`);
  if (where === null) return null;
  const w = where as { offset: number; field: string };
  return { ...w, message: `more than ${max} steps (--max-steps)` };
}

/* ------------------------------------------------------------------------------------------ */

type Path = readonly PropertyKey[];
type At = (offset: number) => { line: number; column: number };

/** dotted path with [i] for list indexes: steps[3].set_user_memory_region2.slot */
export function formatPath(path: Path): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else out += out ? `.${String(seg)}` : String(seg);
  }
  return out;
}

function issueToErrors(issue: z.core.$ZodIssue, doc: Document, file: string, at: At): ScenarioError[] {
  const path = issue.path as PropertyKey[];
  if (issue.code === 'unrecognized_keys') {
    const isStep = isStepPath(path);
    return issue.keys.map((key) => {
      const loc = locate(doc, [...path, key], true);
      let message: string;
      if (isStep && !isOpName(key) && key !== 'as' && key !== 'expect') message = `unknown operation or step field "${key}"`;
      else message = `unknown field "${key}"`;
      return { file, ...at(loc.offset), field: formatPath([...path, key]), message };
    });
  }
  if (issue.code === 'invalid_union') {
    // report the branch that got furthest (most specific path)
    const branches = (issue as { errors?: z.core.$ZodIssue[][] }).errors ?? [];
    const best = branches.flat().sort((a, b) => b.path.length - a.path.length)[0];
    if (best && best.path.length > 0) {
      return issueToErrors({ ...best, path: [...path, ...best.path] } as z.core.$ZodIssue, doc, file, at);
    }
  }
  const loc = locate(doc, path, false);
  let message = issue.message;
  if (loc.missing !== undefined && (issue.code === 'invalid_type' || message.startsWith('required'))) {
    message = `required field "${String(loc.missing)}" is missing`;
  } else if (issue.code === 'invalid_type' && path[path.length - 1] === 'expect') {
    message = 'expect is `ok` or a mapping of expected fields (errno, value, exit, ...)';
  }
  return [{ file, ...at(loc.offset), field: formatPath(path), message }];
}

function isStepPath(path: Path): boolean {
  return (
    (path.length === 2 && path[0] === 'steps' && typeof path[1] === 'number') ||
    (path.length === 4 && path[0] === 'concurrent' && path[1] === 'actors' && typeof path[3] === 'number')
  );
}

/**
 * Walk the YAML node tree along `path`; return the offset of the deepest node found.
 * With `keyNode`, the last segment's key (not its value) is located.
 */
function locate(doc: Document, path: Path, keyNode: boolean): { offset: number; missing?: PropertyKey } {
  let node: unknown = doc.contents;
  let offset = rangeStart(node) ?? 0;
  for (let i = 0; i < path.length; i++) {
    const seg = path[i]!;
    if (isMap(node)) {
      const pair = node.items.find((p) => isPair(p) && scalarKey(p.key) === String(seg));
      if (!pair) return { offset, missing: seg };
      if (keyNode && i === path.length - 1) return { offset: rangeStart(pair.key) ?? offset };
      node = pair.value;
      offset = rangeStart(node) ?? rangeStart(pair.key) ?? offset;
    } else if (isSeq(node) && typeof seg === 'number') {
      const item = node.items[seg];
      if (item === undefined) return { offset, missing: seg };
      node = item;
      offset = rangeStart(node) ?? offset;
    } else {
      return { offset, missing: seg };
    }
  }
  return { offset };
}

function rangeStart(node: unknown): number | undefined {
  const r = (node as Node | null)?.range;
  return r ? r[0] : undefined;
}

function scalarKey(key: unknown): string | undefined {
  if (isScalar(key)) return String(key.value);
  return undefined;
}

/** the path of the map key that starts at `offset` (for duplicate-key errors) */
function duplicateKeyPath(doc: Document, offset: number): PropertyKey[] | null {
  const walk = (node: unknown, path: PropertyKey[]): PropertyKey[] | null => {
    if (isMap(node)) {
      for (const p of node.items) {
        const k = scalarKey(p.key);
        const r = (p.key as Node | null)?.range;
        if (k !== undefined && r && r[0] <= offset && offset < Math.max(r[1], r[0] + 1)) return [...path, k];
        const found = walk(p.value, [...path, k ?? '?']);
        if (found) return found;
      }
    } else if (isSeq(node)) {
      for (let i = 0; i < node.items.length; i++) {
        const found = walk(node.items[i], [...path, i]);
        if (found) return found;
      }
    }
    return null;
  };
  return walk(doc.contents, []);
}

function annotateLines(steps: Step[], base: PropertyKey[], doc: Document, at: At): void {
  steps.forEach((step, i) => {
    const loc = locate(doc, [...base, i], false);
    step.line = at(loc.offset).line;
  });
}

function firstLine(s: string): string {
  return s.split('\n')[0]!;
}

function dedupe(errors: ScenarioError[]): ScenarioError[] {
  const seen = new Set<string>();
  return errors.filter((e) => {
    const k = `${e.line}:${e.column}:${e.field}:${e.message}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}
