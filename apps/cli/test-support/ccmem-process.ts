/** The `ccmem` command in a child process for tests, from the source entry as `pnpm ccmem` runs it. */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** the repository root (the child's working directory) */
export const ROOT = new URL('../../../', import.meta.url).pathname;
/** a target module whose targets the CCMEM_FAKE_* variables shape */
export const FAKE_TARGET = join(ROOT, 'apps/cli/test-support/fake-target.ts');

/** node's arguments that run the CLI from source, relative to ROOT */
export const SOURCE_ENTRY = ['--conditions=@ccmem/source', '--import', 'tsx', 'apps/cli/src/bin.ts'];

/** this process's environment without its colour switches (a developer's FORCE_COLOR would win over NO_COLOR), plus `extra` */
export function childEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const { FORCE_COLOR: _f, NO_COLOR: _n, ...rest } = process.env;
  return { ...rest, ...extra };
}

export interface CliRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface CliSpawnOptions {
  /** added to the environment; `{ NO_COLOR: '1' }` when not given */
  env?: Record<string, string>;
  /** node options before the source entry's, e.g. `['--import', hook]` */
  nodeArgs?: string[];
  timeout?: number;
  input?: string;
}

/** `ccmem <args>` in a child process, from the repository root, in childEnv(env) */
export function ccmem(args: string[], opts: CliSpawnOptions = {}): CliRun {
  const r = spawnSync(process.execPath, [...(opts.nodeArgs ?? []), ...SOURCE_ENTRY, ...args], {
    cwd: ROOT,
    encoding: 'utf8',
    env: childEnv(opts.env ?? { NO_COLOR: '1' }),
    ...(opts.timeout !== undefined && { timeout: opts.timeout }),
    ...(opts.input !== undefined && { input: opts.input }),
  });
  return { code: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

/** the environment for a run against the fake targets: NO_COLOR, the fake target module, `extra` */
export const fakeTargetEnv = (extra: Record<string, string> = {}): Record<string, string> => ({ NO_COLOR: '1', CCMEM_TARGET_MODULE: FAKE_TARGET, ...extra });

/** a fresh temporary folder and a writer of files in it */
export function tempDir(prefix: string): { dir: string; file(name: string, text: string): string } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return {
    dir,
    file(name, text) {
      const p = join(dir, name);
      writeFileSync(p, text);
      return p;
    },
  };
}
