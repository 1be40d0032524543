import pc from 'picocolors';

/** Where a command writes; colour as `colorEnabled()` decides. */
export interface CliIo {
  out(text: string): void;
  err(text: string): void;
  readonly isTTY: boolean;
  readonly color: ReturnType<typeof pc.createColors>;
}

/**
 * Whether to colour output written to a stream, as the ecosystem expects
 * (https://force-color.org, https://no-color.org, and Node's own `tty.hasColors()`):
 * `FORCE_COLOR` set to anything but `0` or `false` turns colour on even off a terminal and wins
 * over `NO_COLOR`; `FORCE_COLOR=0` turns it off; otherwise a non-empty `NO_COLOR` turns it off;
 * otherwise colour when the stream is a terminal whose `TERM` is not `dumb`.
 */
export function colorEnabled(isTTY: boolean, env: NodeJS.ProcessEnv = process.env): boolean {
  const force = env.FORCE_COLOR;
  if (force !== undefined) return force !== '0' && force.toLowerCase() !== 'false';
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== '') return false;
  return isTTY && env.TERM !== 'dumb';
}

export function processIo(env: NodeJS.ProcessEnv = process.env): CliIo {
  const isTTY = Boolean(process.stdout.isTTY);
  return {
    out: (t) => void process.stdout.write(t.endsWith('\n') ? t : `${t}\n`),
    err: (t) => void process.stderr.write(t.endsWith('\n') ? t : `${t}\n`),
    isTTY,
    color: pc.createColors(colorEnabled(isTTY, env)),
  };
}

/** A CliIo that records output (tests, embedding). */
export function bufferIo(isTTY = false): CliIo & { stdout: string[]; stderr: string[] } {
  const stdout: string[] = [];
  const stderr: string[] = [];
  return { stdout, stderr, out: (t) => void stdout.push(t), err: (t) => void stderr.push(t), isTTY, color: pc.createColors(false) };
}
