import { bufferIo } from '../src/io.js';
import { main } from '../src/program.js';

/** `ccmem <args>` run in this process (an empty environment): the exit code and the lines written to stdout and stderr */
export async function ccmemInProcess(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const io = bufferIo();
  const code = await main(['node', 'ccmem', ...args], io, {});
  return { code, stdout: io.stdout.join('\n'), stderr: io.stderr.join('\n') };
}
