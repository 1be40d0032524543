import { Command, Option } from 'commander';
import { spinner } from '@clack/prompts';
import {
  INVARIANT_MODES,
  ScenarioParseError,
  builtinScenarios,
  buildMatrix,
  cellMatches,
  kvmUnavailableReason,
  matrixCells,
  summarizeMatrix,
  type InvariantMode,
  type MatrixColumns,
  type MatrixRow,
  type Target,
  type TargetName,
} from '@ccmem/scenario';
import type { KernelProfile } from '@ccmem/core';
import type { CliIo } from '../io.js';
import { getTargetFactory, kvmColumnAvailable, type TargetFactory } from '../targets.js';
import { ALLOW_EMPTY_HELP, EXIT_FAIL, EXIT_INVALID, EXIT_OK, INVARIANTS_OPTION_HELP, nothingRan, reportInvalid, toJson } from './shared.js';

export interface MatrixCommandOptions {
  json?: boolean;
  filter?: string;
  /** run the scenarios of this directory instead of the built-in suite */
  dir?: string;
  /** leave out the real-KVM column even when it is available */
  kvm?: boolean;
  /** when the model checks its invariants (default step) */
  invariants?: InvariantMode;
  allowEmpty?: boolean;
}

export async function matrixCommand(io: CliIo, opts: MatrixCommandOptions): Promise<number> {
  let entries;
  try {
    entries = builtinScenarios(opts.dir);
  } catch (e) {
    if (e instanceof ScenarioParseError) return reportInvalid(io, e.errors, Boolean(opts.json));
    io.err(`${io.color.red('error')} ${(e as Error).message}`);
    return EXIT_INVALID;
  }
  let columns: MatrixColumns;
  let modelFactory: TargetFactory;
  const invariants = opts.invariants ?? 'step';
  try {
    const factory = await getTargetFactory('model');
    modelFactory = (o) => factory({ ...o, invariants });
    columns = { model: () => modelFactory() };
  } catch (e) {
    io.err(`${io.color.red('error')} ${(e as Error).message}`);
    return EXIT_INVALID;
  }
  if (opts.kvm !== false && kvmColumnAvailable()) {
    // a kvm target that cannot load makes every kvm row a skip that says why
    columns.kvm = await getTargetFactory('kvm').catch((e: unknown) => () => {
      throw e;
    });
  }
  if (columns.kvm) {
    // `profile: host` on the model column follows the kernel the kvm column runs on
    let hostProfile: KernelProfile | undefined;
    try {
      hostProfile = (columns.kvm() as Target & { profile?: KernelProfile }).profile;
    } catch {
      hostProfile = undefined; // the kvm rows say why
    }
    if (hostProfile && typeof hostProfile === 'object') {
      columns.model = () => modelFactory({ hostProfile: hostProfile! });
    }
  }
  const targets: TargetName[] = columns.kvm ? ['model', 'kvm'] : ['model'];
  // without the real-KVM column the run says why, once (not once per cell)
  const kvmColumnSkipped = columns.kvm ? undefined : opts.kvm === false ? '--no-kvm' : (kvmUnavailableReason() ?? 'the kvm target is not available');
  const total = matrixCells(entries, targets).filter((c) => cellMatches(c, opts.filter)).length;

  const c = io.color;
  const live = io.isTTY && !opts.json;
  const spin = live ? spinner() : null;
  spin?.start(`running ${total} matrix rows`);
  const rows: MatrixRow[] = [];
  for (const entry of entries) {
    buildMatrix([entry], columns, {
      filter: opts.filter,
      onRow: (row) => {
        rows.push(row);
        if (spin) spin.message(`${rows.length}/${total} ${row.scenario}`);
        else if (!opts.json) io.out(`${row.status.padEnd(4)}  ${row.vm_type.padEnd(12)}  ${row.provider.padEnd(11)}  ${row.target.padEnd(5)}  ${row.scenario}${skipReason(row)}`);
      },
    });
    if (live) await new Promise((r) => setImmediate(r));
  }
  const { passed, failed, skipped } = summarizeMatrix(rows);
  spin?.stop(`${rows.length} rows`);

  if (opts.json) {
    io.out(
      toJson({
        rows: rows.map((r) => ({
          scenario: r.scenario,
          file: r.file,
          vm_type: r.vm_type,
          provider: r.provider,
          target: r.target,
          status: r.status,
          ...(r.reason !== undefined && r.status !== 'pass' && { reason: r.reason }),
        })),
        passed,
        failed,
        skipped,
        ...(kvmColumnSkipped !== undefined && { kvm_column: { skipped: kvmColumnSkipped } }),
      }),
    );
  } else {
    if (live) printTable(io, rows);
    for (const r of rows.filter((x) => x.status === 'fail')) {
      io.out(`${c.red('fail')} ${r.scenario} [${r.vm_type}/${r.provider}/${r.target}] ${c.dim(r.file)}\n      ${r.reason ?? ''}`);
    }
    if (kvmColumnSkipped !== undefined) io.out(c.yellow(`kvm column skipped: ${kvmColumnSkipped}`));
    io.out(`\n${c.green(`${passed} passed`)}, ${failed ? c.red(`${failed} failed`) : '0 failed'}, ${c.yellow(`${skipped} skipped`)}`);
  }
  if (failed > 0) return EXIT_FAIL;
  if (passed === 0) {
    const why = rows.length === 0 ? (opts.filter !== undefined ? `no row matches --filter ${opts.filter}` : 'no scenario to run') : 'every row was skipped';
    return nothingRan(io, why, opts.allowEmpty);
  }
  return EXIT_OK;
}

/** a skipped row names why: `  (host: no KVM_CAP_GUEST_MEMFD)` */
function skipReason(r: MatrixRow): string {
  return r.status === 'skip' && r.reason ? `  (${r.reason})` : '';
}

function printTable(io: CliIo, rows: readonly MatrixRow[]): void {
  const c = io.color;
  const mark = (s: MatrixRow['status']) => (s === 'pass' ? c.green('pass') : s === 'fail' ? c.red('fail') : c.yellow('skip'));
  io.out(c.bold(`${'status'.padEnd(6)}  ${'vm type'.padEnd(12)}  ${'provider'.padEnd(11)}  ${'target'.padEnd(6)}  scenario`));
  for (const r of rows) {
    io.out(`${mark(r.status)}    ${r.vm_type.padEnd(12)}  ${r.provider.padEnd(11)}  ${r.target.padEnd(6)}  ${r.scenario}${c.dim(skipReason(r))}`);
  }
}

export function buildMatrixCommand(io: CliIo, done: (code: number) => void): Command {
  return new Command('matrix')
    .description('run the built-in conformance suite on every VM type × memory provider (× real KVM when available)')
    .option('--json', 'print one JSON document with every row')
    .option('--filter <text>', 'only rows whose scenario, file, VM type, provider or target contain this text')
    .option('--dir <directory>', 'run the scenarios of this directory instead of the built-in suite')
    .option('--no-kvm', 'leave out the real-KVM column')
    .addOption(new Option('--invariants <mode>', INVARIANTS_OPTION_HELP).choices([...INVARIANT_MODES]).default('step'))
    .option('--allow-empty', ALLOW_EMPTY_HELP)
    .action(async (opts: MatrixCommandOptions) => done(await matrixCommand(io, opts)));
}
