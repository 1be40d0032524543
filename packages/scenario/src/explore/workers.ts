/**
 * `--workers N`: the N shards of an exhaustive exploration (ShardSpec) in `worker_threads` on
 * this machine, merged into one result (merge.ts). Each worker loads the exploration itself (a
 * file path or a built-in name), so nothing but plain options and the shard crosses threads.
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { ExploreOptions, ExploreProgress, ExploreReport } from './engine.js';
import { mergeResults, reportToJson, type ExploreResultJson } from './merge.js';

/**
 * where the workers load the exploration from: a built-in, a file, or the text already read
 * from a file (the workers then never touch the file system for it)
 */
export type ExplorationSource = { builtin: string } | { file: string } | { file: string; text: string };

/** what a worker is given (structured-cloned) */
export interface WorkerTask {
  source: ExplorationSource;
  /** the options without functions */
  options: Omit<ExploreOptions, 'onProgress' | 'shard'>;
  shard: { index: number; count: number; depth?: number };
  name?: string;
  progressIntervalMs: number;
}

export type WorkerMessage = { kind: 'progress'; progress: ExploreProgress } | { kind: 'done'; report: ExploreReport } | { kind: 'error'; message: string };

/**
 * A new worker running the entry next to this file: the built .js, or (a TypeScript source tree
 * run by tsx or vitest) the .ts source, loaded through tsx's loader registered in the worker,
 * with @ccmem/* resolved to their sources.
 */
function startWorker(task: WorkerTask): Worker {
  if (!import.meta.url.endsWith('.ts')) return new Worker(new URL('./worker-main.js', import.meta.url), { workerData: task });
  // tsx's ESM register API (its "exports" give require() the CommonJS build)
  const api = pathToFileURL(join(dirname(createRequire(import.meta.url).resolve('tsx/package.json')), 'dist/esm/api/index.mjs')).href;
  const main = new URL('./worker-main.ts', import.meta.url).href;
  // the "@ccmem/source" export condition (--conditions is not a per-worker option) as a resolve hook
  const hook = 'data:text/javascript,export function resolve(s, c, n) { return n(s, { ...c, conditions: [...c.conditions, "@ccmem/source"] }); }';
  const boot = [
    `const { register } = require('node:module');`,
    `register(${JSON.stringify(hook)});`,
    `import(${JSON.stringify(api)}).then((m) => { m.register(); return import(${JSON.stringify(main)}); });`,
  ].join('\n');
  return new Worker(boot, { eval: true, workerData: task });
}

export interface WorkersOptions {
  name?: string;
  onProgress?: (p: ExploreProgress) => void;
  progressIntervalMs?: number;
  /** prefix length of the partition (ShardSpec.depth) */
  shardDepth?: number;
}

/** Run the exhaustive exploration as `workers` shards in worker threads and merge them. */
export async function exploreWorkers(source: ExplorationSource, options: ExploreOptions, workers: number, wo: WorkersOptions = {}): Promise<ExploreResultJson> {
  if (!Number.isInteger(workers) || workers < 1) throw new Error('--workers needs a positive integer');
  const { onProgress: _drop, shard: _shard, ...rest } = options;
  // a schedule cap is for the whole search: each shard gets its share
  const plain = rest.schedules !== undefined && Number.isFinite(rest.schedules) ? { ...rest, schedules: Math.max(1, Math.ceil(rest.schedules / workers)) } : rest;
  void _drop;
  void _shard;
  const interval = wo.progressIntervalMs ?? 1000;
  const latest: (ExploreProgress | null)[] = Array.from({ length: workers }, () => null);
  const t0 = performance.now();
  let lastReport = 0;
  const aggregate = () => {
    const now = performance.now();
    if (!wo.onProgress || now - lastReport < interval) return;
    lastReport = now;
    let schedules = 0;
    let steps = 0;
    let frontier = 0;
    let violatingRuns = 0;
    for (const p of latest) {
      if (!p) continue;
      schedules += p.schedules;
      steps += p.steps;
      frontier += p.frontier;
      violatingRuns += p.violatingRuns;
    }
    const elapsedMs = now - t0;
    wo.onProgress({ schedules, steps, elapsedMs, stepsPerSecond: elapsedMs > 0 ? (steps / elapsedMs) * 1000 : 0, frontier, violatingRuns, done: false });
  };
  const bound = options.bound ?? 64;
  const reports = await Promise.all(
    Array.from({ length: workers }, (_, index) => {
      const task: WorkerTask = {
        source,
        options: plain,
        shard: { index, count: workers, ...(wo.shardDepth !== undefined && { depth: wo.shardDepth }) },
        ...(wo.name !== undefined && { name: wo.name }),
        progressIntervalMs: interval,
      };
      const w = startWorker(task);
      return new Promise<ExploreReport>((resolve, reject) => {
        let settled = false;
        w.on('message', (m: WorkerMessage) => {
          if (m.kind === 'progress') {
            latest[index] = m.progress;
            aggregate();
          } else if (m.kind === 'done') {
            settled = true;
            resolve(m.report);
          } else {
            settled = true;
            reject(new Error(m.message));
          }
        });
        w.on('error', (e) => {
          settled = true;
          reject(e);
        });
        w.on('exit', (code) => {
          if (!settled) reject(new Error(`explore worker ${index + 1}/${workers} exited with code ${code}`));
        });
      });
    }),
  );
  wo.onProgress?.({ schedules: 0, steps: 0, elapsedMs: performance.now() - t0, stepsPerSecond: 0, frontier: 0, violatingRuns: 0, done: true });
  const merged = mergeResults(reports.map((r) => reportToJson(r, bound)));
  // one process: the wall time is what it took here, not the slowest worker's own clock
  merged.stats.elapsedMs = performance.now() - t0;
  return merged;
}
