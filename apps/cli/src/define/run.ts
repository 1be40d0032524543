/** The `ccmem run` command line; the work is in commands/run.ts. */
import { Command, Option } from 'commander';
import type { CliIo } from '../io.js';
import type { RunCommandOptions } from '../commands/run.js';
import { ALLOW_EMPTY_HELP, addInputOptions, addReportOptions } from './options.js';

export function buildRunCommand(io: CliIo, done: (code: number) => void): Command {
  const cmd = new Command('run')
    .description('run scenario files and check every expectation (exit 0 all pass, 1 any fail, 2 invalid file)')
    .argument('<paths...>', 'scenario YAML files, directories (every .yaml/.yml below them) or quoted globs ("scenarios/snp/*.yaml")')
    .addOption(new Option('--target <target>', 'where to run them').choices(['model', 'kvm']).default('model'))
    .option('--json', 'print one JSON document with every step outcome')
    .option('--trace <file>', 'write the kernel events of every step to this JSON file')
    .option('--stop-on-failure', 'stop a scenario at its first failing step')
    .option('--allow-empty', ALLOW_EMPTY_HELP);
  return addReportOptions(addInputOptions(cmd, true)).action(async (paths: string[], opts: RunCommandOptions) => {
    const { runCommand } = await import('../commands/run.js');
    done(await runCommand(io, paths, opts));
  });
}
