import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { renderOpDocs } from './docs.js';
import { OP_FAMILIES } from './index.js';

const DOC = new URL('../../../../docs/scenarios.md', import.meta.url);

describe('docs/scenarios.md op tables', () => {
  const text = readFileSync(DOC, 'utf8');

  it('are what the registry generates (run `pnpm docs:ops` after changing an op)', () => {
    expect(renderOpDocs(text) === text, 'docs/scenarios.md is stale: run `pnpm docs:ops`').toBe(true);
  });

  it('list every op family exactly once', () => {
    const listed = [...text.matchAll(/<!-- ops: ([a-z -]+) -->/g)].flatMap((m) => m[1]!.trim().split(/\s+/));
    expect([...listed].sort()).toEqual(Object.keys(OP_FAMILIES).sort());
  });

  it('name every argument of an op', () => {
    const row = renderOpDocs('<!-- ops: snp -->\n<!-- /ops -->').split('\n').find((l) => l.startsWith('| `guest_psc` |'));
    expect(row).toBe(
      "| `guest_psc` | `vcpu` addr, `entries` list of { `gpa` n, `operation` `private`\\|`shared`\\|`psmash`\\|`unsmash`, `page_size?` 4KiB/2MiB, `cur_page?` n } | a GHCB Page State Change request; an entry's `cur_page` (default 0) is the number of its 4K pages already done (`struct psc_entry`), `psmash`/`unsmash` entries ask the host to split or merge the RMP entry | `ret`, or an exit |",
    );
  });
});
