import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import type { CliIo } from './io.js';
import { processIo } from './io.js';
import { buildRunCommand } from './define/run.js';
import { buildMatrixCommand } from './define/matrix.js';
import { buildExplainCommand } from './define/explain.js';
import { buildDiffCommand } from './define/diff.js';
import { buildExploreCommand } from './define/explore.js';
import { buildMergeCommand } from './define/merge.js';
import { buildHostCommand } from './define/host.js';
import { buildFuzzCommand } from './define/fuzz.js';
import { buildReportCommand } from './define/report.js';

/** 2: invalid input, usage or environment (commands/shared.ts has the full list) */
const EXIT_INVALID = 2;

/** The version of this package (@ccmem/cli), from its package.json (beside src/ and dist/). */
export function cliVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version?: unknown };
  return typeof pkg.version === 'string' ? pkg.version : '0.0.0';
}

/**
 * The `ccmem` program; `done` receives each command's exit code. Building it loads only
 * commander: each command imports its work when it runs. Before any command runs, the targets
 * are resolved (`loadTargets(env)`).
 */
export function buildProgram(io: CliIo, done: (code: number) => void, env: NodeJS.ProcessEnv = process.env): Command {
  const program = new Command('ccmem')
    .description('ccmem: an executable, kernel-checked model of KVM guest memory for confidential VMs')
    .version(cliVersion(), '-V, --version', "print ccmem's version")
    .showHelpAfterError()
    // a command is listed with the usage its own help prints, less `[options]` (one usage text
    // per command)
    .configureHelp({ subcommandTerm: (cmd) => `${cmd.name()} ${cmd.usage().replace(/\s*\[options\]\s*/, ' ').trim()}` })
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.out(s), writeErr: (s) => io.err(s) })
    .hook('preAction', async () => {
      const { loadTargets } = await import('./targets.js');
      try {
        await loadTargets(env);
      } catch (e) {
        io.err(`error: ${(e as Error).message}`);
        throw new CommanderError(EXIT_INVALID, 'ccmem.targets', (e as Error).message);
      }
    });
  for (const cmd of [
    buildRunCommand(io, done),
    buildMatrixCommand(io, done),
    buildExplainCommand(io, done),
    buildDiffCommand(io, done),
    buildExploreCommand(io, done),
    buildMergeCommand(io, done),
    buildHostCommand(io, done),
    buildFuzzCommand(io, done),
    buildReportCommand(io, done),
  ]) {
    cmd.exitOverride().configureOutput({ writeOut: (s) => io.out(s), writeErr: (s) => io.err(s) });
    program.addCommand(cmd);
  }
  return program;
}

/** Run the CLI with `argv` as in process.argv (node, script, ...args); resolves to the exit code. */
export async function main(argv: readonly string[], io: CliIo = processIo(), env: NodeJS.ProcessEnv = process.env): Promise<number> {
  let code = 0;
  const program = buildProgram(
    io,
    (c) => {
      code = c;
    },
    env,
  );
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
