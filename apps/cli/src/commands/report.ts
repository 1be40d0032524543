/**
 * `ccmem report <file> [-o report.html]`, and the `--report <file>` of `diff`, `explore` and
 * `matrix`: one self-contained HTML file per run (docs/report.md). The state the page draws
 * is the model's own, taken after every step (or phase) by the model that ran it.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { basename, dirname, extname, join, relative } from 'node:path';
import {
  buildDiffReport,
  buildExploreReport,
  buildRunReport,
  createModelTarget,
  type ExploreOptions,
  type ExploreResultJson,
  type MatrixRow,
  type ReportData,
  type Scenario,
  type ScenarioEntry,
  type Target,
} from '@ccmem/scenario';
import type { KernelProfile } from '@ccmem/core';
import type { CliIo } from '../io.js';
import { escapeHtml, renderReportHtml } from '../report/html.js';
import { EXIT_FAIL, EXIT_OK, loadFiles, reportInvalid, targetsOrReport } from './shared.js';

/** write a report page; returns its size in bytes */
export function writeReport(path: string, data: ReportData): number {
  const html = renderReportHtml(data);
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, html);
  return Buffer.byteLength(html);
}

function kib(bytes: number): string {
  return bytes < 10_240 ? `${(bytes / 1024).toFixed(1)} KiB` : `${Math.round(bytes / 1024)} KiB`;
}

/** `x/y.yaml` → `y.html` */
export function defaultReportPath(file: string): string {
  return `${basename(file, extname(file))}.html`;
}

export interface ReportCommandOptions {
  output?: string;
}

export async function reportCommand(io: CliIo, file: string, opts: ReportCommandOptions): Promise<number> {
  const { loaded, errors } = await loadFiles([file]);
  if (errors.length) return reportInvalid(io, errors, false);
  const { scenario } = loaded[0]!;
  const out = opts.output ?? defaultReportPath(file);
  const data = buildRunReport(scenario, { file });
  const bytes = writeReport(out, data);
  io.out(`${data.pass ? io.color.green('✓') : io.color.red('✗')} ${scenario.name}: ${data.verdict}`);
  io.out(`report: ${out} (${kib(bytes)}, ${data.steps.length} steps, ${data.states.length} distinct states)`);
  return data.pass ? EXIT_OK : EXIT_FAIL;
}

/* ------------------------------------------------------------------------------------------ */
/* --report on the other commands                                                             */
/* ------------------------------------------------------------------------------------------ */

/** an index page linking reports */
function writeIndex(path: string, title: string, rows: { text: string; href: string | null; status: string; reason?: string }[]): number {
  const items = rows
    .map(
      (r) =>
        `<tr class="${escapeHtml(r.status)}"><td>${escapeHtml(r.status)}</td><td>${r.href ? `<a href="${escapeHtml(r.href)}">${escapeHtml(r.text)}</a>` : escapeHtml(r.text)}</td><td>${escapeHtml(r.reason ?? '')}</td></tr>`,
    )
    .join('\n');
  const html = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>${escapeHtml(title)}</title>
<style>body{font:13px/1.4 system-ui,sans-serif;margin:16px}table{border-collapse:collapse}td{border-bottom:1px solid #d0d7de;padding:3px 8px;vertical-align:top}tr.fail td:first-child{color:#cf222e;font-weight:700}tr.pass td:first-child{color:#1a7f37}tr.skip td:first-child{color:#9a6700}</style>
</head><body><h1 style="font-size:16px">${escapeHtml(title)}</h1>
<table>
${items}
</table></body></html>
`;
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, html);
  return Buffer.byteLength(html);
}

/** the directory next to an index page that holds its reports: `r.html` → `r.files/` */
function filesDir(index: string): string {
  return join(dirname(index), `${basename(index, extname(index))}.files`);
}

function slug(s: string): string {
  return s.replace(/[^A-Za-z0-9_.-]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 80) || 'report';
}

/**
 * `ccmem diff --report <file>`: the pages of the comparisons the diff command ran (model with
 * snapshots, `buildDiffReport()`, beside kvm); one page for one scenario, an index of pages for
 * several.
 */
export function writeDiffReports(io: CliIo, pages: readonly { file: string; scenario: Scenario; data: ReportData }[], out: string): void {
  if (pages.length === 1) {
    const bytes = writeReport(out, pages[0]!.data);
    io.err(`report: ${out} (${kib(bytes)})`);
    return;
  }
  const dir = filesDir(out);
  const rows = pages.map((p, i) => {
    const path = join(dir, `${i}-${slug(p.scenario.name)}.html`);
    writeReport(path, p.data);
    return { text: `${p.scenario.name} (${p.file})`, href: relative(dirname(out), path), status: p.data.pass ? 'pass' : 'fail', reason: p.data.verdict };
  });
  writeIndex(out, 'ccmem diff: model vs kvm', rows);
  io.err(`report: ${out} (index of ${rows.length} reports in ${dir})`);
}

/** `ccmem explore --report <file>`: the counterexample (or the chosen schedule) phase by phase */
export function writeExploreReport(
  io: CliIo,
  scenario: Scenario,
  options: ExploreOptions,
  result: ExploreResultJson,
  out: string,
  meta: { name?: string; file?: string; schedule?: string } = {},
): void {
  const data = buildExploreReport(scenario, options, result, meta);
  const bytes = writeReport(out, data);
  io.err(`report: ${out} (${kib(bytes)})`);
}

/**
 * `ccmem matrix --report <file>`: an index of every row, each failing cell linked to its own
 * report (a model cell: the run view of that VM type and provider; a kvm cell: model vs kvm).
 */
export async function writeMatrixReport(io: CliIo, rows: readonly MatrixRow[], entries: readonly ScenarioEntry[], out: string, hostProfile?: KernelProfile): Promise<void> {
  const dir = filesDir(out);
  const byFile = new Map(entries.map((e) => [e.file, e.scenario]));
  let kvm: Target | null = null;
  const index: { text: string; href: string | null; status: string; reason?: string }[] = [];
  let n = 0;
  for (const r of rows) {
    const text = `${r.scenario} [${r.vm_type}/${r.provider}/${r.target}]`;
    const scenario = byFile.get(r.file);
    if (r.status !== 'fail' || !scenario) {
      index.push({ text, href: null, status: r.status, ...(r.reason !== undefined && { reason: r.reason }) });
      continue;
    }
    const path = join(dir, `${n++}-${slug(`${r.scenario}-${r.vm_type}-${r.provider}-${r.target}`)}.html`);
    const model = createModelTarget(hostProfile ? { hostProfile } : {});
    let data: ReportData;
    if (r.target === 'kvm') {
      kvm ??= ((await targetsOrReport(io, 'kvm')) ?? [])[0] ?? null;
      if (!kvm) {
        index.push({ text, href: null, status: r.status, reason: r.reason ?? '' });
        continue;
      }
      const cell = { ...scenario, vm: { ...scenario.vm, type: r.vm_type, provider: r.provider } };
      data = buildDiffReport(cell, model, kvm, { file: r.file }).data;
    } else {
      data = buildRunReport(scenario, { file: r.file, vmType: r.vm_type, provider: r.provider, model });
    }
    writeReport(path, data);
    index.push({ text, href: relative(dirname(out), path), status: r.status, ...(r.reason !== undefined && { reason: r.reason }) });
  }
  const failed = index.filter((x) => x.href !== null).length;
  writeIndex(out, `ccmem matrix: ${rows.length} rows, ${rows.filter((r) => r.status === 'fail').length} failed`, index);
  io.err(`report: ${out} (${rows.length} rows, ${failed} failing cells with a report${failed ? ` in ${dir}` : ''})`);
}
