/**
 * Running the `ccmem` command in a child process on hostile input: whatever the input, the
 * process must end with an exit code in {0, 1, 2}, never by a signal, and never print a stack
 * trace.
 */
import { ccmem as spawnCcmem, type CliRun, type CliSpawnOptions } from '../../test-support/ccmem-process.js';

export { tempDir } from '../../test-support/ccmem-process.js';

/** `ccmem <args>` in a child process, stopped after 60 s unless `opts.timeout` says otherwise */
export function ccmem(args: string[], opts: CliSpawnOptions = {}): CliRun {
  return spawnCcmem(args, { timeout: 60_000, ...opts });
}

/** a stack frame line as V8 prints it */
export const STACK_FRAME = /^\s+at .+(\(|:\d+:\d+)/m;
