#!/usr/bin/env node
import { main } from './program.js';

// `ccmem matrix | head -1`: the reader went away. Node ignores SIGPIPE, so the next write
// fails with EPIPE; end quietly (exit 0, as ripgrep does: the reader asked for no more) instead
// of dying with a stack trace.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(0);
    throw e;
  });
}

main(process.argv).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    const err = e instanceof Error ? e : new Error(String(e));
    process.stderr.write(`error: ${process.env.CCMEM_DEBUG ? (err.stack ?? err.message) : err.message}\n`);
    process.exitCode = 2;
  },
);
