/** The `ccmem explain` command line; the work is in commands/explain.ts. */
import { Command, Option } from 'commander';
import type { TargetName } from '@ccmem/scenario';
import type { CliIo } from '../io.js';

export function buildExplainCommand(io: CliIo, done: (code: number) => void): Command {
  return new Command('explain')
    .description('run a scenario and tell, step by step, the kernel events each step caused')
    .argument('<file>', 'scenario YAML file')
    .addOption(new Option('--target <target>', 'where to run it').choices(['model', 'kvm']).default('model'))
    .option('--json', 'print one JSON document: every step with its arguments, outcome, kernel rule and kernel events')
    .action(async (file: string, opts: { target: TargetName; json?: boolean }) => {
      const { explainCommand } = await import('../commands/explain.js');
      done(await explainCommand(io, file, opts));
    });
}
