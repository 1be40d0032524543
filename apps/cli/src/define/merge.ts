/** The `ccmem merge` command line; the work is in commands/merge.ts. */
import { Command } from 'commander';
import type { CliIo } from '../io.js';
import { READ_TIMEOUT_HELP } from './options.js';

export function buildMergeCommand(io: CliIo, done: (code: number) => void): Command {
  return new Command('merge')
    .description('merge the --json results of the shards of an exploration (ccmem explore --shard K/N)')
    .argument('<results...>', 'result files of ccmem explore --shard K/N --json')
    .option('--json', 'print one JSON document')
    .option('--read-timeout <duration>', READ_TIMEOUT_HELP.replace('scenario file', 'result file'))
    .action(async (files: string[], opts: { json?: boolean; readTimeout?: string }) => {
      const { mergeCommand } = await import('../commands/merge.js');
      done(await mergeCommand(io, files, opts));
    });
}
