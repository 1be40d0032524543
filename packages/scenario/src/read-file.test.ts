import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readFilesBounded } from './read-file.js';
import { readScenarioTextsWithin } from './parse.js';

const dir = mkdtempSync(join(tmpdir(), 'ccmem-read-file-'));
const file = (name: string, text: string) => {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
};
const fifo = (name: string) => {
  const p = join(dir, name);
  execFileSync('mkfifo', [p]);
  return p;
};
const OPTS = { maxBytes: 1024, timeoutMs: 10_000, regularOnly: true, sizeOption: '--max-file-size', timeoutOption: '--read-timeout' };

describe('readFilesBounded', () => {
  it('reads regular files in order; refuses directories, non-regular files and files over the limit', async () => {
    const a = file('a.txt', 'héllo');
    const big = file('big.txt', 'x'.repeat(2000));
    const r = await readFilesBounded([a, dir, fifo('f1'), big, join(dir, 'missing')], OPTS);
    expect(r).toEqual([
      { path: a, text: 'héllo' },
      { path: dir, error: 'is a directory' },
      { path: join(dir, 'f1'), error: 'not a regular file (a FIFO, socket or device is never read)' },
      { path: big, error: 'the file is 2000 bytes, more than the limit of 1024 (--max-file-size)' },
      { path: join(dir, 'missing'), error: 'cannot read file (ENOENT)' },
    ]);
  });

  it('a file whose open never returns (a FIFO without writer) is given up at the time bound; the files after it are read', async () => {
    // regularOnly: false opens the FIFO, which blocks in open(2) until a writer comes: one never does
    const hung = fifo('hung');
    const after = file('after.txt', 'still read');
    const t0 = performance.now();
    const r = await readFilesBounded([hung, after], { ...OPTS, regularOnly: false, timeoutMs: 300 });
    const ms = performance.now() - t0;
    expect(r).toEqual([
      { path: hung, error: 'not read within 300 ms (--read-timeout): the file system did not answer (a hung network or FUSE mount?)' },
      { path: after, text: 'still read' },
    ]);
    expect(ms).toBeGreaterThanOrEqual(290);
  });

  it("the bound counts from the reader's start, not from spawning it: a short bound still reads ordinary files", async () => {
    // starting a node process takes longer than 150 ms on a loaded machine; reading a small file does not
    const files = ['one.txt', 'two.txt', 'three.txt'].map((n) => file(n, n));
    const r = await readFilesBounded(files, { ...OPTS, timeoutMs: 150 });
    expect(r).toEqual(files.map((path, i) => ({ path, text: ['one.txt', 'two.txt', 'three.txt'][i] })));
  });

  it('a pipe with a writer is read to its end when non-regular files are allowed', async () => {
    const p = fifo('fed');
    const writer = execFileSync('sh', ['-c', `(printf 'piped' > '${p}') >/dev/null 2>&1 & echo started`], { encoding: 'utf8' });
    expect(writer.trim()).toBe('started');
    const [r] = await readFilesBounded([p], { ...OPTS, regularOnly: false });
    expect(r).toEqual({ path: p, text: 'piped' });
  });
});

describe('readScenarioTextsWithin', () => {
  it('gives each file that could not be read a located error at line 1', async () => {
    const ok = file('ok.yaml', 'name: t\n');
    const r = await readScenarioTextsWithin([ok, dir], { maxFileBytes: 100 });
    expect(r[0]).toEqual({ path: ok, text: 'name: t\n' });
    expect(r[1]).toEqual({ path: dir, errors: [{ file: dir, line: 1, column: 1, field: '', message: 'is a directory, not a scenario file' }] });
  });
});
