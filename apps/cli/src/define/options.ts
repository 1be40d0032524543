/**
 * Options several commands share. This file and the other `define/` files hold only the
 * command lines (names, options, help); each command's work is in `commands/`, imported when the
 * command runs, so that `ccmem --help` and `ccmem --version` load nothing but commander.
 */
import { Command, InvalidArgumentError, Option } from 'commander';

export const REPORTERS = ['junit', 'tap', 'json'] as const;
export type ReporterName = (typeof REPORTERS)[number];

/** `--reporter junit|tap|json` and `--output <file>` */
export interface ReportOptions {
  reporter?: ReporterName;
  output?: string;
}

export function addReportOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('--reporter <format>', 'also write a report for CI dashboards: junit (XML), tap (TAP 13) or json; to stdout (instead of the text), or to --output').choices(REPORTERS))
    .option('--output <file>', 'write the --reporter report to this file (the text or --json output stays on stdout)');
}

/** comma-separated values, repeatable: `--vm-type snp,tdx --vm-type default` */
export function list(value: string, previous: string[] | undefined): string[] {
  const items = value.split(',').map((s) => s.trim()).filter((s) => s !== '');
  if (items.length === 0) throw new InvalidArgumentError('needs at least one value');
  return [...(previous ?? []), ...items];
}

/** a repeatable option taken whole (scenario names hold commas, globs hold `{a,b}`) */
export function repeatable(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

/** "90" (seconds), "1500ms", "30s", "5m", "1h", "1m30s" → milliseconds */
export function parseDuration(v: string): number {
  const t = v.trim();
  if (/^\d+(\.\d+)?$/.test(t)) return Number(t) * 1000;
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h)/gy;
  const unit: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  let ms = 0;
  let end = 0;
  for (let m = re.exec(t); m; m = re.exec(t)) {
    ms += Number(m[1]) * unit[m[2]!]!;
    end = re.lastIndex;
  }
  if (end === 0 || end !== t.length) throw new InvalidArgumentError('needs a duration like 90, 30s, 5m, 1h30m or 500ms');
  return ms;
}

/** "K/N" with 1 <= K <= N → 0-based index */
export function parseShard(v: string): { index: number; count: number } {
  const m = /^(\d+)\/(\d+)$/.exec(v.trim());
  const k = m ? Number(m[1]) : NaN;
  const n = m ? Number(m[2]) : NaN;
  if (!m || n < 1 || k < 1 || k > n) throw new InvalidArgumentError('needs K/N with 1 <= K <= N (e.g. 2/4)');
  return { index: k - 1, count: n };
}

/** a non-negative integer option value */
export function count(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError('needs a non-negative integer');
  return n;
}

export function positive(v: string): number {
  const n = count(v);
  if (n < 1) throw new InvalidArgumentError('needs a positive integer');
  return n;
}

/**
 * `--invariants` (run, matrix): INVARIANT_MODES of @ccmem/scenario, written out here so that
 * `--help` loads nothing (define/options.test.ts checks they agree)
 */
export const INVARIANT_MODE_CHOICES = ['full', 'step', 'off'] as const;
export const INVARIANTS_OPTION_HELP =
  'when the model checks its invariants: full (after every step), step (every step of the first 1000, then every 1000th and the last), off';
/** the input limits' defaults (DEFAULT_INPUT_LIMITS of @ccmem/scenario; checked by the same test) */
export const DEFAULT_MAX_STEPS = 100_000;
export const DEFAULT_MAX_FILE_MIB = 16;
export const MAX_STEPS_HELP = `the most steps a scenario file may have (default ${DEFAULT_MAX_STEPS})`;
export const MAX_FILE_SIZE_HELP = `the largest scenario file read, in bytes (KiB/MiB suffixes; default ${DEFAULT_MAX_FILE_MIB}MiB)`;
export const DEFAULT_READ_TIMEOUT_S = 10;
export const READ_TIMEOUT_HELP = `the longest reading one scenario file may take, e.g. 30s or 500ms (a hung network or FUSE mount; default ${DEFAULT_READ_TIMEOUT_S}s)`;
export const ALLOW_EMPTY_HELP = 'exit 0 even when nothing ran (every scenario skipped, or no scenario matched)';

/**
 * `--invariants` (run, matrix) and, for commands that read scenario files, `--max-steps` /
 * `--max-file-size` / `--read-timeout`
 */
export function addInputOptions(cmd: Command, limits: boolean): Command {
  cmd.addOption(new Option('--invariants <mode>', INVARIANTS_OPTION_HELP).choices(INVARIANT_MODE_CHOICES).default('step'));
  return limits
    ? cmd.option('--max-steps <n>', MAX_STEPS_HELP).option('--max-file-size <bytes>', MAX_FILE_SIZE_HELP).option('--read-timeout <duration>', READ_TIMEOUT_HELP)
    : cmd;
}
