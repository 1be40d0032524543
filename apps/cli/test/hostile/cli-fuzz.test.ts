/**
 * The fuzzer's inputs through the real `ccmem run` process: whatever the text, the exit code is
 * 0, 1 or 2, never a signal, stderr carries no stack trace, and `--json` prints one document.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { scenarioTextArb } from '@ccmem/scenario';
import { ccmem, STACK_FRAME, tempDir } from './support.js';

const t = tempDir('ccmem-hostile-cli-fuzz-');

describe('ccmem run on fuzzer inputs', () => {
  const texts = fc.sample(scenarioTextArb({ guestMemfd: true, gmemFlags: [0, 1, 3], crossPage: true }), { numRuns: 4, seed: Number(process.env.CCMEM_FUZZ_SEED ?? 11) });
  it.each(texts.map((text, i) => [i, text] as const))('input %i', (i, text) => {
    const f = t.file(`in-${i}.yaml`, text);
    const r = ccmem(['run', '--json', '--allow-empty', f], { timeout: 60_000 });
    expect(r.signal, text).toBeNull();
    expect([0, 1, 2], `${text}\n${r.stderr}`).toContain(r.code);
    expect(r.stderr).not.toMatch(STACK_FRAME);
    expect(() => JSON.parse(r.stdout), r.stdout).not.toThrow();
  });
});
