/**
 * The body of one `--workers` thread (workers.ts): load the exploration, explore one shard,
 * post progress and the report back.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { explore } from './engine.js';
import { loadBuiltinExploration, loadExplorationFile, parseExploration } from './load.js';
import type { WorkerMessage, WorkerTask } from './workers.js';

const task = workerData as WorkerTask;
const post = (m: WorkerMessage) => parentPort!.postMessage(m);
try {
  const src = task.source;
  const loaded = 'builtin' in src ? loadBuiltinExploration(src.builtin) : 'text' in src ? parseExploration(src.text, src.file) : loadExplorationFile(src.file);
  if (!loaded.ok) throw new Error(loaded.errors.map((e) => e.message).join('; '));
  const { scenario } = loaded.exploration;
  const report = explore(
    scenario,
    { ...task.options, shard: task.shard, progressIntervalMs: task.progressIntervalMs, onProgress: (progress) => post({ kind: 'progress', progress }) },
    task.name ?? scenario.name,
  );
  post({ kind: 'done', report });
} catch (e) {
  post({ kind: 'error', message: (e as Error).message });
}
