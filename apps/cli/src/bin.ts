#!/usr/bin/env node
import { main } from './index.js';

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
