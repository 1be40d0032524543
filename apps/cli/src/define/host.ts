/** The `ccmem host` command line; the work is in commands/host.ts. */
import { Command } from 'commander';
import type { CliIo } from '../io.js';

export function buildHostCommand(io: CliIo, done: (code: number) => void): Command {
  return new Command('host')
    .description("what this machine's KVM is and what the real-KVM target can run here")
    .option('--json', 'machine-readable output')
    .action(async (opts: { json?: boolean }) => {
      const { hostCommand } = await import('../commands/host.js');
      done(await hostCommand(io, opts));
    });
}
