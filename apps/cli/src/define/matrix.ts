/** The `ccmem matrix` command line; the work is in commands/matrix.ts. */
import { Command } from 'commander';
import type { CliIo } from '../io.js';
import type { MatrixCommandOptions } from '../commands/matrix.js';
import { addReportOptions, list, repeatable, ALLOW_EMPTY_HELP, addInputOptions } from './options.js';

export function buildMatrixCommand(io: CliIo, done: (code: number) => void): Command {
  const cmd = new Command('matrix')
    .description('run the built-in conformance suite on every VM type × memory provider (× real KVM when available)')
    .option('--json', 'print one JSON document with every row')
    .option('--vm-type <types>', 'only these VM types: default, sw-protected, sev, sev-es, snp, tdx (comma-separated, repeatable)', list)
    .option('--provider <providers>', 'only these memory providers: guest_memfd, device_fd (comma-separated, repeatable)', list)
    .option('--target <targets>', 'only these targets: model, kvm (comma-separated, repeatable)', list)
    .option('--scenario <name>', 'only scenarios whose name, or file path in the suite, is this exactly or matches it as a glob ("snp/*", "*conversion*"; repeatable)', repeatable)
    .option('--filter <text>', 'only rows whose scenario, file, VM type, provider or target contain this text (a substring match: "snp" also matches a TDX row of a scenario named after SNP; prefer --vm-type/--scenario)')
    .option('--dir <directory>', 'run the scenarios of this directory instead of the built-in suite')
    .option('--no-kvm', 'leave out the real-KVM column')
    .option('--report <file>', 'write an HTML index of the rows, each failing cell linked to its own report')
    .option('--allow-empty', ALLOW_EMPTY_HELP)
    .option('--fail-on-skip', 'exit 1 when any row is skipped, or the real-KVM column is left out because this host has no /dev/kvm');
  return addReportOptions(addInputOptions(cmd, false)).action(async (opts: MatrixCommandOptions) => {
    const { matrixCommand } = await import('../commands/matrix.js');
    done(await matrixCommand(io, opts));
  });
}
