/**
 * `ccmem diff` and `ccmem explore` are registered here; program.ts installs their
 * implementations (commands/diff.ts, commands/explore.ts) with `setCommandImplementation`.
 */
import { Command } from 'commander';
import type { CliIo } from '../io.js';
import { EXIT_INVALID } from './shared.js';

export interface DiffOptions {
  json?: boolean;
}
export type DiffImplementation = (io: CliIo, files: string[], opts: DiffOptions) => number | Promise<number>;
export type ExploreImplementation = (io: CliIo, args: string[], opts: Record<string, unknown>) => number | Promise<number>;

const notAvailable = (name: string) => (io: CliIo) => {
  io.err(`${io.color.red('error')} ccmem ${name} is not available in this build`);
  return EXIT_INVALID;
};

const implementations: { diff: DiffImplementation; explore: ExploreImplementation } = {
  diff: notAvailable('diff'),
  explore: notAvailable('explore'),
};

export function setCommandImplementation(name: 'diff', impl: DiffImplementation): void;
export function setCommandImplementation(name: 'explore', impl: ExploreImplementation): void;
export function setCommandImplementation(name: 'diff' | 'explore', impl: DiffImplementation | ExploreImplementation): void {
  (implementations as Record<string, unknown>)[name] = impl;
}

export function buildDiffCommand(io: CliIo, done: (code: number) => void): Command {
  return new Command('diff')
    .description('run scenario files on the model and on real KVM and show where their outcomes differ')
    .argument('<files...>', 'scenario YAML files')
    .option('--json', 'print one JSON document')
    .action(async (files: string[], opts: DiffOptions) => done(await implementations.diff(io, files, opts)));
}

export function buildExploreCommand(io: CliIo, done: (code: number) => void): Command {
  return new Command('explore')
    .description('explore the interleavings of a scenario with concurrent actors')
    .argument('[args...]', 'scenario files and explorer arguments')
    .allowUnknownOption(true)
    .action(async (args: string[], opts: Record<string, unknown>) => done(await implementations.explore(io, args, opts)));
}
