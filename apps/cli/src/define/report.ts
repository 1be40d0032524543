/** The `ccmem report` command line; the work is in commands/report.ts. */
import { Command } from 'commander';
import type { CliIo } from '../io.js';
import type { ReportCommandOptions } from '../commands/report.js';

export function buildReportCommand(io: CliIo, done: (code: number) => void): Command {
  return new Command('report')
    .description('run a scenario on the model and write one self-contained HTML report: the steps, and the guest memory after each of them')
    .argument('<file>', 'scenario YAML file')
    .option('-o, --output <file>', 'where to write the report (default: the scenario file name with .html, in the current directory)')
    .action(async (file: string, opts: ReportCommandOptions) => {
      const { reportCommand } = await import('../commands/report.js');
      done(await reportCommand(io, file, opts));
    });
}
