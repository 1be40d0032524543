// `pnpm docs:ops`: regenerate the op tables of docs/scenarios.md from the op registry.
import { readFileSync, writeFileSync } from 'node:fs';
import { renderOpDocs } from '../src/ops/docs.js';

const file = new URL('../../../docs/scenarios.md', import.meta.url);
const text = readFileSync(file, 'utf8');
const next = renderOpDocs(text);
if (next !== text) writeFileSync(file, next);
console.log(`docs/scenarios.md: op tables ${next === text ? 'up to date' : 'regenerated'}`);
