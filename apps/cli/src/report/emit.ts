/**
 * `--reporter junit|tap|json [--output <file>]`: write the report to the file, or to stdout in
 * place of the text output.
 */
import { writeFileSync } from 'node:fs';
import type { CliIo } from '../io.js';
import type { ReportOptions } from '../define/options.js';
import type { ReportCase } from './cases.js';
import { formatJunit } from './junit.js';
import { formatTap } from './tap.js';

/** Whether stdout carries the report (so the command prints no text there). */
export function reportOnStdout(o: ReportOptions): boolean {
  return o.reporter !== undefined && o.output === undefined;
}

/** Whether the command's --json document goes to stdout: `--json`, or `--reporter json` without `--output`. */
export function jsonOnStdout(o: ReportOptions & { json?: boolean }): boolean {
  return Boolean(o.json) || (o.reporter === 'json' && o.output === undefined);
}

/** Whether the command prints its text lines: no --json document and no report on stdout. */
export function textOnStdout(o: ReportOptions & { json?: boolean }): boolean {
  return !jsonOnStdout(o) && !reportOnStdout(o);
}

/**
 * The usage error of a report option combination, or null: `--output` needs `--reporter`, and
 * `--json` with a junit/tap report on stdout would mix two documents there.
 */
export function reportUsageError(o: ReportOptions & { json?: boolean }): string | null {
  if (o.output !== undefined && o.reporter === undefined) return '--output needs --reporter junit|tap|json';
  if (o.json && o.reporter !== undefined && o.reporter !== 'json' && o.output === undefined) return `--json and --reporter ${o.reporter} both print to stdout: give --output <file> for the report`;
  return null;
}

/**
 * Write the report: `json` is the command's --json document, `cases` feed junit and tap. With
 * `--json --reporter json` and no `--output` the command printed that document already.
 * Returns false (after saying why on stderr) when the file cannot be written.
 */
export function emitReport(io: CliIo, o: ReportOptions & { json?: boolean }, title: string, cases: () => readonly ReportCase[], json: () => string): boolean {
  if (o.reporter === undefined) return true;
  if (o.json && o.reporter === 'json' && o.output === undefined) return true;
  const text = o.reporter === 'json' ? `${json()}\n` : o.reporter === 'junit' ? formatJunit(title, cases()) : formatTap(cases());
  if (o.output === undefined) {
    io.out(text);
    return true;
  }
  try {
    writeFileSync(o.output, text);
    return true;
  } catch (e) {
    io.err(`${io.color.red('error')} cannot write ${o.output}: ${(e as Error).message}`);
    return false;
  }
}
