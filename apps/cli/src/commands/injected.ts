/**
 * `ccmem diff` and `ccmem explore` are registered here; their implementations can be
 * replaced with `setCommandImplementation`. `diff` has a default: run each file on the model
 * and on real KVM and print every step whose outcomes differ.
 */
import { Command } from 'commander';
import { diffResults, runScenario } from '@ccmem/scenario';
import type { CliIo } from '../io.js';
import { getTarget } from '../targets.js';
import { EXIT_FAIL, EXIT_INVALID, EXIT_OK, loadFiles, reportInvalid, toJson } from './shared.js';

export interface DiffOptions {
  json?: boolean;
}
export type DiffImplementation = (io: CliIo, files: string[], opts: DiffOptions) => number | Promise<number>;
export type ExploreImplementation = (io: CliIo, args: string[], opts: Record<string, unknown>) => number | Promise<number>;

const implementations: { diff: DiffImplementation; explore: ExploreImplementation } = {
  diff: defaultDiff,
  explore: (io) => {
    io.err(`${io.color.red('error')} ccmem explore is not available in this build`);
    return EXIT_INVALID;
  },
};

export function setCommandImplementation(name: 'diff', impl: DiffImplementation): void;
export function setCommandImplementation(name: 'explore', impl: ExploreImplementation): void;
export function setCommandImplementation(name: 'diff' | 'explore', impl: DiffImplementation | ExploreImplementation): void {
  (implementations as Record<string, unknown>)[name] = impl;
}

export function defaultDiff(io: CliIo, files: string[], opts: DiffOptions): number {
  const { loaded, errors } = loadFiles(files);
  if (errors.length) return reportInvalid(io, errors, Boolean(opts.json));
  let model, kvm;
  try {
    model = getTarget('model');
    kvm = getTarget('kvm');
  } catch (e) {
    io.err(`${io.color.red('error')} ${(e as Error).message}`);
    return EXIT_INVALID;
  }
  const out = [];
  let differing = 0;
  for (const { file, scenario } of loaded) {
    const a = runScenario(scenario, model, { file });
    const b = runScenario(scenario, kvm, { file });
    const steps = diffResults(a, b);
    if (steps.length) differing++;
    out.push({ file, name: scenario.name, same: steps.length === 0, steps });
    if (!opts.json) {
      io.out(`${steps.length ? io.color.red('≠') : io.color.green('=')} ${scenario.name} ${io.color.dim(`(${file})`)}`);
      for (const s of steps) io.out(`    step ${s.index} ${s.op}: ${s.differences.join('; ')}  ${io.color.dim('(model vs kvm)')}`);
    }
  }
  if (opts.json) io.out(toJson({ scenarios: out, differing }));
  return differing ? EXIT_FAIL : EXIT_OK;
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
