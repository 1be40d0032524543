/**
 * Running the `ccmem` command in a child process on hostile input: whatever the input, the
 * process must end with an exit code in {0, 1, 2}, never by a signal, and never print a stack
 * trace.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const ROOT = new URL('../../../../', import.meta.url).pathname;

export interface CliRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export function ccmem(args: string[], opts: { env?: Record<string, string>; timeout?: number; input?: string } = {}): CliRun {
  const r = spawnSync(process.execPath, ['--conditions=@ccmem/source', '--import', 'tsx', 'apps/cli/src/bin.ts', ...args], {
    cwd: ROOT,
    encoding: 'utf8',
    timeout: opts.timeout ?? 60_000,
    env: { ...process.env, NO_COLOR: '1', ...opts.env },
    ...(opts.input !== undefined && { input: opts.input }),
  });
  return { code: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

/** a stack frame line as V8 prints it */
export const STACK_FRAME = /^\s+at .+(\(|:\d+:\d+)/m;

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

export const hasKvm = existsSync('/dev/kvm');
