import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { bufferIo } from '../io.js';
import { ccmemInProcess } from '../../test-support/ccmem-in-process.js';
import { parseDuration, parseShard, progressReporter } from './explore.js';

describe('ccmem explore limits', () => {
  it('parses durations and shards', () => {
    expect(parseDuration('90')).toBe(90_000);
    expect(parseDuration('1500ms')).toBe(1500);
    expect(parseDuration('1m30s')).toBe(90_000);
    expect(parseDuration('2h')).toBe(7_200_000);
    expect(() => parseDuration('5 minutes')).toThrow(/duration/);
    expect(parseShard('2/4')).toEqual({ index: 1, count: 4 });
    expect(() => parseShard('5/4')).toThrow(/K\/N/);
    expect(() => parseShard('0/4')).toThrow(/K\/N/);
  });

  it('progress off a terminal: a plain line on stderr every 5 s, nothing when done', () => {
    const io = bufferIo(false);
    const pr = progressReporter(io, 'exhaustive');
    expect(pr.interval).toBe(5000);
    pr.report({ schedules: 1200, steps: 48000, elapsedMs: 15_000, stepsPerSecond: 41_000, frontier: 57, violatingRuns: 0, done: false });
    pr.report({ schedules: 1300, steps: 50000, elapsedMs: 16_000, stepsPerSecond: 41_000, frontier: 0, violatingRuns: 0, done: true });
    expect(io.stderr).toEqual(['explore: 1200 schedules, 41k steps/s, frontier 57, 0 violating, 15 s']);
    expect(io.stdout).toEqual([]);
  });

  it('--max-schedules: the summary says incomplete, never pass, and the exit code is 3', async () => {
    const r = await ccmemInProcess(['explore', '--builtin', 'fault-vs-conversion', '--max-schedules', '20']);
    expect(r.code).toBe(3);
    expect(r.stdout).toMatch(/INCOMPLETE \(schedule limit reached\): 20 schedules/);
    expect(r.stdout).toMatch(/not a pass/);
    const j = await ccmemInProcess(['explore', '--builtin', 'fault-vs-conversion', '--max-schedules', '20', '--json']);
    expect(JSON.parse(j.stdout)).toMatchObject({ schedules: 20, pass: false, complete: false, result: 'incomplete', stopReason: 'max-schedules' });
  });

  it('--time: stops and says so; progress lines go to stderr', async () => {
    const r = await ccmemInProcess(['explore', '--builtin', 'fault-vs-conversion', '--time', '0ms', '--json']);
    expect(r.code).toBe(3);
    expect(JSON.parse(r.stdout)).toMatchObject({ complete: false, result: 'incomplete', stopReason: 'time' });
    const ok = await ccmemInProcess(['explore', '--builtin', 'gmem-punch-vs-fault']);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(/✓ gmem-punch-vs-fault: exhaustive bound 8, complete: \d+ schedules/);
  });
});

describe('ccmem explore --shard and ccmem merge', () => {
  it('three shards merged report the unsharded result', async () => {
    const whole = JSON.parse((await ccmemInProcess(['explore', '--builtin', 'snp-rmp-timing', '--json'])).stdout);
    const dir = mkdtempSync(join(tmpdir(), 'ccmem-merge-'));
    const files: string[] = [];
    for (const k of [1, 2, 3]) {
      const r = await ccmemInProcess(['explore', '--builtin', 'snp-rmp-timing', '--shard', `${k}/3`, '--json']);
      expect(r.code).toBe(0);
      const doc = JSON.parse(r.stdout);
      expect(doc.shard).toEqual({ index: k - 1, count: 3, depth: 4 });
      files.push(join(dir, `shard-${k}.json`));
      writeFileSync(files.at(-1)!, r.stdout);
    }
    const m = await ccmemInProcess(['merge', ...files, '--json']);
    expect(m.code).toBe(0);
    const merged = JSON.parse(m.stdout);
    expect(merged).toMatchObject({ name: 'snp-rmp-timing', result: 'pass', complete: true, shards: 3, schedules: whole.schedules });
    expect(merged.stats.observations).toEqual(whole.stats.observations);
    expect(merged.stats.steps).toBe(whole.stats.steps);
    const partial = await ccmemInProcess(['merge', files[0]!, files[1]!]);
    expect(partial.code).toBe(3);
    expect(partial.stderr).toMatch(/shards missing: 3\/3/);
    const text = await ccmemInProcess(['merge', ...files]);
    expect(text.stdout).toMatch(/3 shards merged, complete/);
  });

  it('a violation found by a shard is the merged counterexample', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ccmem-merge-'));
    const files: string[] = [];
    for (const k of [1, 2]) {
      const r = await ccmemInProcess(['explore', '--builtin', 'fault-vs-conversion', '--skip-retry-check', '--shard', `${k}/2`, '--json']);
      files.push(join(dir, `shard-${k}.json`));
      writeFileSync(files.at(-1)!, r.stdout);
    }
    const m = await ccmemInProcess(['merge', ...files, '--json']);
    expect(m.code).toBe(1);
    const merged = JSON.parse(m.stdout);
    expect(merged.result).toBe('violation');
    expect(merged.violations).toHaveLength(1);
    expect(merged.violations[0].violation).toMatch(/maps pfn .* but its backing is/);
    expect((await ccmemInProcess(['merge', join(dir, 'nope.json')])).code).toBe(2);
  });

  it('--workers 2 gives the single-thread result', async () => {
    const one = JSON.parse((await ccmemInProcess(['explore', '--builtin', 'tdx-zap-vs-aug', '--json'])).stdout);
    const two = JSON.parse((await ccmemInProcess(['explore', '--builtin', 'tdx-zap-vs-aug', '--workers', '2', '--json'])).stdout);
    expect(two).toMatchObject({ result: 'pass', complete: true, shards: 2, schedules: one.schedules });
    expect(two.stats.steps).toBe(one.stats.steps);
    expect((await ccmemInProcess(['explore', '--builtin', 'tdx-zap-vs-aug', '--workers', '2', '--shard', '1/2'])).code).toBe(2);
  });
});
