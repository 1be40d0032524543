import { loadBuiltinExploration, explore } from './index.js';
const name = process.argv[2]!;
const l = loadBuiltinExploration(name);
if (!l.ok) { console.log(l.errors); process.exit(2); }
const extra = JSON.parse(process.argv[3] ?? '{}');
const r = explore(l.exploration.scenario, { ...l.exploration.options, ...extra });
console.log(JSON.stringify({ ...r, violations: r.violations.map(v => ({ ...v, events: v.events.length })) }, (k, v) => typeof v === 'bigint' ? v.toString(16) : v, 1));
