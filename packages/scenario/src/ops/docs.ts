/**
 * The op tables of docs/scenarios.md, generated from the registry: each block between
 * `<!-- ops: <family> ... -->` and `<!-- /ops -->` lists the ops of those families with their
 * arguments (read from the zod schema), what they do and what their outcome carries.
 * `pnpm docs:ops` rewrites the file; a test fails when it differs.
 */
import type { z } from 'zod';
import { OP_FAMILIES, type OpFamily } from './index.js';
import type { OpSpec } from './op.js';

interface Def {
  type: string;
  innerType?: z.ZodType;
  element?: z.ZodType;
  shape?: Record<string, z.ZodType>;
  catchall?: z.ZodType;
  entries?: Record<string, string>;
}
const defOf = (s: z.ZodType) => (s as unknown as { _zod: { def: Def } })._zod.def;

/** `schema` in the docs' words: n, v, addr, flags, `a\|b`, list of …, { … } */
function describe(s: z.ZodType): string {
  if (s.description) return s.description;
  const d = defOf(s);
  switch (d.type) {
    case 'optional':
    case 'default':
      return describe(d.innerType!);
    case 'boolean':
      return 'bool';
    case 'string':
      return 'string';
    case 'enum':
      return Object.values(d.entries!).map((v) => `\`${v}\``).join('\\|');
    case 'array':
      return `list of ${describe(d.element!)}`;
    case 'object':
      return `{ ${fields(s)} }`;
    default:
      throw new Error(`docs: no description for a ${d.type} field`);
  }
}

function fields(s: z.ZodType): string {
  const d = defOf(s);
  const out = Object.entries(d.shape!).map(([name, f]) => {
    const t = defOf(f).type;
    return `\`${name}${t === 'optional' || t === 'default' ? '?' : ''}\` ${describe(f)}`;
  });
  if (d.catchall && defOf(d.catchall).type !== 'never') out.push(`any other field: ${describe(d.catchall)}`);
  return out.length ? out.join(', ') : '— (`{}`)';
}

/** the markdown table of some families' ops */
export function opTable(families: readonly OpFamily[]): string {
  const rows = ['| op | arguments | does | outcome |', '|---|---|---|---|'];
  for (const family of families) {
    for (const [name, spec] of Object.entries(OP_FAMILIES[family]) as [string, OpSpec][]) {
      rows.push(`| \`${name}\` | ${fields(spec.args)} | ${spec.does} | ${spec.result ?? ''} |`);
    }
  }
  return rows.join('\n');
}

const BLOCK = /(<!-- ops: ([a-z -]+) -->\n)[\s\S]*?(<!-- \/ops -->)/g;

/** `markdown` with every op block regenerated */
export function renderOpDocs(markdown: string): string {
  return markdown.replace(BLOCK, (_all, open: string, names: string, close: string) => {
    const families = names.trim().split(/\s+/);
    for (const f of families) if (!(f in OP_FAMILIES)) throw new Error(`docs: no op family "${f}" (known: ${Object.keys(OP_FAMILIES).join(', ')})`);
    return `${open}${opTable(families as OpFamily[])}\n${close}`;
  });
}
