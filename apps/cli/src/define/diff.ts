/** The `ccmem diff` command line; the work is in commands/diff.ts. */
import { Command } from 'commander';
import type { CliIo } from '../io.js';
import type { DiffOptions } from '../commands/diff.js';
import { ALLOW_EMPTY_HELP, addReportOptions } from './options.js';

export function buildDiffCommand(io: CliIo, done: (code: number) => void): Command {
  const cmd = new Command('diff')
    .description('run scenario files on the model and on real KVM and show where their outcomes differ')
    .argument('<paths...>', 'scenario YAML files, directories or quoted globs')
    .option('--json', 'print one JSON document')
    .option('--stats', "also compare the MMU statistics (KVM_GET_STATS_FD) each step changes: the leaf counts, and the shadow MMU's counters on a shadow-paging host")
    .option('--allow-empty', ALLOW_EMPTY_HELP)
    .option('--report <file>', 'write a self-contained HTML report: model and kvm outcomes side by side, the model state after each step (several files: an index page)');
  return addReportOptions(cmd).action(async (paths: string[], opts: DiffOptions) => {
    const { diffCommand } = await import('../commands/diff.js');
    done(await diffCommand(io, paths, opts));
  });
}
