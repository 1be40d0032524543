/**
 * Reading files a user named, within a time bound: a file on a hung network or FUSE mount
 * blocks stat(), open() or read() for as long as the mount hangs.
 *
 * The reads run in a child process. In this process a blocked call would still be in libuv's
 * thread pool (fs.promises) or in a worker thread when the time is up, and Node joins both as
 * the process exits: `process.exit()` itself would hang. A child that does not answer in time
 * is killed and left behind (its pipes closed, unreferenced), so the caller reports the error
 * and exits. One child reads a whole list of files, one after the other, each within the bound;
 * after a file that timed out, the files after it are read by a new child.
 */
import { spawn } from 'node:child_process';

/** the default time bound of reading one input file (docs/scenarios.md, "Limits") */
export const DEFAULT_READ_TIMEOUT_MS = 10_000;

export interface BoundedReadOptions {
  /** the most bytes read (a larger file is refused); Infinity for no bound */
  maxBytes: number;
  /** the time reading one file (stat, open, reads) may take, in milliseconds */
  timeoutMs: number;
  /** refuse a FIFO, socket or device before opening it (a FIFO without writer blocks open()) */
  regularOnly: boolean;
  /** the options the messages name for the limits (e.g. `--max-file-size`) */
  sizeOption?: string;
  timeoutOption?: string;
}

/** one file's text, or why it was not read (a message for the user, no stack) */
export type BoundedReadResult = { path: string; text: string } | { path: string; error: string };

/**
 * The child: says it has started (`{"ready":true}`), then reads each file of argv[1] (JSON:
 * paths and limits) synchronously and writes one JSON line per file, `{"text"}` or `{"error"}`,
 * in order. Plain CommonJS for `node -e`.
 */
const CHILD = String.raw`
const fs = require('node:fs');
const cfg = JSON.parse(process.argv[1]);
const max = cfg.maxBytes === null ? Infinity : cfg.maxBytes;
const size = cfg.sizeOption ? ' (' + cfg.sizeOption + ')' : '';
function read(path) {
  let fd;
  try {
    const st = fs.statSync(path);
    if (st.isDirectory()) return { error: 'is a directory' };
    if (cfg.regularOnly && !st.isFile()) return { error: 'not a regular file (a FIFO, socket or device is never read)' };
    fd = fs.openSync(path, cfg.regularOnly ? fs.constants.O_RDONLY | fs.constants.O_NONBLOCK : fs.constants.O_RDONLY);
  } catch (e) {
    return { error: 'cannot read file (' + (e.code || 'error') + ')' };
  }
  try {
    const st = fs.fstatSync(fd);
    if (cfg.regularOnly && !st.isFile()) return { error: 'not a regular file (a FIFO, socket or device is never read)' };
    if (st.isFile() && st.size > max) return { error: 'the file is ' + st.size + ' bytes, more than the limit of ' + max + size };
    const chunks = [];
    let total = 0;
    for (;;) {
      // a regular file: its size, +1 to see it grow; anything else 64 KiB at a time
      const want = st.isFile() ? Math.min(st.size, max) + 1 - total : 65536;
      if (want <= 0) break;
      const buf = Buffer.alloc(want);
      const got = fs.readSync(fd, buf, 0, want, null);
      if (got === 0) break;
      chunks.push(buf.subarray(0, got));
      total += got;
      if (total > max) return { error: 'the file is more than the limit of ' + max + ' bytes' + size };
    }
    return { text: Buffer.concat(chunks, total).toString('utf8') };
  } catch (e) {
    return { error: 'cannot read file (' + (e.code || 'error') + ')' };
  } finally {
    fs.closeSync(fd);
  }
}
fs.writeSync(1, '{"ready":true}\n');
for (const p of cfg.paths) fs.writeSync(1, JSON.stringify(read(p)) + '\n');
`;

/**
 * How long the child may take to start before it reads anything: the bound of one file counts
 * from the child's first line, so a loaded machine's slow process start is not a slow file.
 */
const CHILD_START_MS = 30_000;

function describeMs(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000} s` : `${ms} ms`;
}

/** Read `paths` (UTF-8) within the bounds of `opts`, in order; never throws for a file. */
export async function readFilesBounded(paths: readonly string[], opts: BoundedReadOptions): Promise<BoundedReadResult[]> {
  const out: BoundedReadResult[] = [];
  while (out.length < paths.length) out.push(...(await readInChild(paths.slice(out.length), opts)));
  return out;
}

/** the results of one child: every path, or those up to and including one that timed out */
function readInChild(paths: readonly string[], opts: BoundedReadOptions): Promise<BoundedReadResult[]> {
  return new Promise((resolve) => {
    const cfg = { paths, maxBytes: Number.isFinite(opts.maxBytes) ? opts.maxBytes : null, regularOnly: opts.regularOnly, sizeOption: opts.sizeOption };
    // the child is plain JavaScript: nothing of this process's loaders (NODE_OPTIONS) is needed
    const env = { ...process.env };
    delete env.NODE_OPTIONS;
    const child = spawn(process.execPath, ['-e', CHILD, JSON.stringify(cfg)], { stdio: ['ignore', 'pipe', 'pipe'], env });
    const results: BoundedReadResult[] = [];
    const parts: Buffer[] = [];
    let stderr = '';
    let done = false;
    let timer: NodeJS.Timeout | undefined;
    const finish = (extra?: BoundedReadResult) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (extra) results.push(extra);
      resolve(results);
    };
    let started = false;
    const arm = () => {
      clearTimeout(timer);
      const ms = started ? opts.timeoutMs : Math.max(opts.timeoutMs, CHILD_START_MS);
      timer = setTimeout(() => {
        const path = paths[results.length]!;
        const how = opts.timeoutOption ? ` (${opts.timeoutOption})` : '';
        // the child may be stuck in the kernel: kill it and let it go
        child.kill('SIGKILL');
        child.stdout.destroy();
        child.stderr.destroy();
        child.unref();
        finish({
          path,
          error: started
            ? `not read within ${describeMs(opts.timeoutMs)}${how}: the file system did not answer (a hung network or FUSE mount?)`
            : `cannot read file (the reader process did not start within ${describeMs(ms)})`,
        });
      }, ms);
    };
    arm();
    child.stdout.on('data', (chunk: Buffer) => {
      let at = chunk.indexOf(10);
      while (at >= 0 && !done) {
        parts.push(chunk.subarray(0, at));
        const line = Buffer.concat(parts).toString('utf8');
        parts.length = 0;
        const r = JSON.parse(line) as { ready?: boolean; text?: string; error?: string };
        if (r.ready === true && !started) {
          // the bound of the first file starts now
          started = true;
          arm();
          chunk = chunk.subarray(at + 1);
          at = chunk.indexOf(10);
          continue;
        }
        const path = paths[results.length]!;
        results.push(r.error !== undefined ? { path, error: r.error } : { path, text: r.text ?? '' });
        if (results.length === paths.length) finish();
        else arm();
        chunk = chunk.subarray(at + 1);
        at = chunk.indexOf(10);
      }
      if (chunk.length) parts.push(chunk);
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString('utf8');
    });
    child.on('error', (e) => finish({ path: paths[results.length]!, error: `cannot read file (${e.message})` }));
    child.on('close', () => {
      if (results.length < paths.length) {
        const why = stderr.trim().split('\n').pop() ?? 'the reader ended early';
        finish({ path: paths[results.length]!, error: `cannot read file (${why})` });
      }
    });
  });
}
