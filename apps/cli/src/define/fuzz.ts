/** The `ccmem fuzz` command line; the work is in commands/fuzz.ts. */
import { Command, Option } from 'commander';
import type { CliIo } from '../io.js';
import type { FuzzCommandOptions } from '../commands/fuzz.js';

export function buildFuzzCommand(io: CliIo, done: (code: number) => void): Command {
  return new Command('fuzz')
    .description('random campaigns: model vs real KVM (diff) or the model against its invariants (model); findings are shrunk to scenario files')
    .addOption(
      new Option('--target <target>', 'diff: model vs /dev/kvm; model: the model and its invariant checker; input: random scenario text read and run (no crash, located errors, bounded memory)')
        .choices(['diff', 'model', 'input'])
        .default('diff'),
    )
    .option('--steps <n>', 'stop after this many steps (--target input: inputs)', '10000')
    .option('--seed <s>', 'the campaign seed (the same seed gives the same campaign)', '1')
    .option('--time <t>', 'stop after this long (90s, 5m, 1h), whatever the step count')
    .option('--out <dir>', 'where findings are written as scenario files', 'fuzz-findings')
    .option('--max-length <n>', 'steps per random sequence at most', '24')
    .option('--profile <name>', 'model campaigns: the kernel profile the sequences run under (e.g. upstream-shadow, linux-6.18-pvm-no-gmem)')
    .option('--json', 'print the summary as JSON')
    .action(async (opts: FuzzCommandOptions) => {
      const { fuzzCommand } = await import('../commands/fuzz.js');
      done(await fuzzCommand(io, opts));
    });
}
