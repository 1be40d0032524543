import pc from 'picocolors';

/** Where a command writes; colour only when stdout is a terminal. */
export interface CliIo {
  out(text: string): void;
  err(text: string): void;
  readonly isTTY: boolean;
  readonly color: ReturnType<typeof pc.createColors>;
}

export function processIo(): CliIo {
  const isTTY = Boolean(process.stdout.isTTY);
  return {
    out: (t) => void process.stdout.write(t.endsWith('\n') ? t : `${t}\n`),
    err: (t) => void process.stderr.write(t.endsWith('\n') ? t : `${t}\n`),
    isTTY,
    color: pc.createColors(isTTY && !process.env.NO_COLOR),
  };
}

/** A CliIo that records output (tests, embedding). */
export function bufferIo(isTTY = false): CliIo & { stdout: string[]; stderr: string[] } {
  const stdout: string[] = [];
  const stderr: string[] = [];
  return { stdout, stderr, out: (t) => void stdout.push(t), err: (t) => void stderr.push(t), isTTY, color: pc.createColors(false) };
}
