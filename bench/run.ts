/**
 * `pnpm bench [-- --json] [-- --filter <substring>]`: runs every `bench/*.bench.ts` of every
 * package and app. Human-readable table by default; `--json` prints one JSON array of
 * `{name, value, unit, target, pass}` rows and nothing else on stdout. A row whose bench
 * throws (the kvm.* rows without /dev/kvm) is printed as ERR with the error, appears in the
 * JSON with `value: null, pass: false, error`, and the run goes on; the exit code is then 1.
 */
import { readdirSync, existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { BenchCase } from './types.js';

const args = process.argv.slice(2).filter((a) => a !== '--');
const json = args.includes('--json');
const filterIdx = args.indexOf('--filter');
const filter = filterIdx >= 0 ? args[filterIdx + 1] : undefined;

const root = resolve(import.meta.dirname, '..');
const files: string[] = [];
for (const group of ['packages', 'apps']) {
  for (const name of readdirSync(join(root, group))) {
    const dir = join(root, group, name, 'bench');
    if (!existsSync(dir)) continue;
    for (const f of readdirSync(dir)) if (f.endsWith('.bench.ts')) files.push(join(dir, f));
  }
}

interface Row {
  name: string;
  /** null when the row could not run (see `error`) */
  value: number | null;
  unit: string;
  target: string;
  pass: boolean;
  error?: string;
}
const rows: Row[] = [];
const log = (line: string) => {
  if (!json) console.log(line);
  else console.error(line);
};

for (const file of files.sort()) {
  const mod = (await import(pathToFileURL(file).href)) as { benches?: BenchCase[] };
  for (const b of mod.benches ?? []) {
    if (filter && !b.name.includes(filter)) continue;
    let value: number;
    try {
      value = await b.run();
    } catch (e) {
      // a row that cannot run (no /dev/kvm for the kvm.* rows) fails loudly and the others go on
      const error = e instanceof Error ? e.message : String(e);
      rows.push({ name: b.name, value: null, unit: b.unit, target: `${b.target.op} ${b.target.value}`, pass: false, error });
      log(`ERR  ${b.name.padEnd(44)} ${error}`);
      continue;
    }
    const pass = b.target.op === '>=' ? value >= b.target.value : value <= b.target.value;
    const row: Row = {
      name: b.name,
      value: Number(value.toPrecision(6)),
      unit: b.unit,
      target: `${b.target.op} ${b.target.value}`,
      pass,
    };
    rows.push(row);
    log(`${pass ? 'ok  ' : 'MISS'} ${row.name.padEnd(44)} ${String(row.value).padStart(14)} ${row.unit.padEnd(12)} (target ${row.target})`);
  }
}

if (json) process.stdout.write(JSON.stringify(rows) + '\n');

if (rows.some((r) => r.error !== undefined)) process.exitCode = 1;
