import { Command, CommanderError } from 'commander';
import type { CliIo } from './io.js';
import { processIo } from './io.js';
import { loadTargets } from './targets.js';
import { buildRunCommand } from './commands/run.js';
import { buildMatrixCommand } from './commands/matrix.js';
import { buildExplainCommand } from './commands/explain.js';
import { buildDiffCommand } from './commands/diff.js';
import { buildExploreCommand } from './commands/explore.js';
import { buildMergeCommand } from './commands/merge.js';
import { buildHostCommand } from './commands/host.js';
import { buildFuzzCommand } from './commands/fuzz.js';
import { EXIT_INVALID } from './commands/shared.js';

/** The `ccmem` program; `done` receives each command's exit code. */
export function buildProgram(io: CliIo, done: (code: number) => void): Command {
  const program = new Command('ccmem')
    .description('ccmem: an executable, kernel-checked model of KVM guest memory for confidential VMs')
    .showHelpAfterError()
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.out(s), writeErr: (s) => io.err(s) });
  for (const cmd of [
    buildRunCommand(io, done),
    buildMatrixCommand(io, done),
    buildExplainCommand(io, done),
    buildDiffCommand(io, done),
    buildExploreCommand(io, done),
    buildMergeCommand(io, done),
    buildHostCommand(io, done),
    buildFuzzCommand(io, done),
  ]) {
    cmd.exitOverride().configureOutput({ writeOut: (s) => io.out(s), writeErr: (s) => io.err(s) });
    program.addCommand(cmd);
  }
  return program;
}

/** Run the CLI with `argv` as in process.argv (node, script, ...args); resolves to the exit code. */
export async function main(argv: readonly string[], io: CliIo = processIo(), env: NodeJS.ProcessEnv = process.env): Promise<number> {
  let code = 0;
  try {
    await loadTargets(env);
  } catch (e) {
    io.err(`error: ${(e as Error).message}`);
    return EXIT_INVALID;
  }
  const program = buildProgram(io, (c) => {
    code = c;
  });
  try {
    await program.parseAsync([...argv]);
  } catch (e) {
    if (e instanceof CommanderError) {
      // --help and --version exit 0; usage errors exit 2 like invalid input
      return e.exitCode === 0 ? 0 : EXIT_INVALID;
    }
    // an internal error: its message, and its stack only when asked for (CCMEM_DEBUG=1)
    const err = e instanceof Error ? e : new Error(String(e));
    io.err(`error: ${env.CCMEM_DEBUG ? (err.stack ?? err.message) : err.message}`);
    return EXIT_INVALID;
  }
  return code;
}
