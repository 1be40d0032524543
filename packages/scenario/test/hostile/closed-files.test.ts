/**
 * A closed guest_memfd is gone for the scenario: every later use of its fd is EBADF (the model
 * never acts on the file behind a stale number), and closing it again is EBADF too.
 */
import { describe, expect, it } from 'vitest';
import { parseScenario } from '../../src/parse.js';
import { runScenario } from '../../src/runner.js';
import { createModelTarget } from '../../src/model-target.js';

const SCENARIO = `name: closed gmem
vm: { type: sw-protected }
steps:
  - create_guest_memfd: { size: 2MiB }
    as: g
  - close: { fd: g }
  - fallocate: { fd: g, mode: [FALLOC_FL_KEEP_SIZE], offset: 0, len: 4KiB }
    expect: { errno: EBADF }
  - close: { fd: g }
    expect: { errno: EBADF }
  - mmap: { size: 4KiB, fd: g }
    expect: { errno: EBADF }
  - create_guest_memfd: { size: 2MiB }
    as: h
  - set_user_memory_region2: { slot: 0, flags: [KVM_MEM_GUEST_MEMFD], guest_phys_addr: 0, memory_size: 4KiB, guest_memfd: g }
    expect: ok
`;

describe('closed files', () => {
  it('every use of a closed guest_memfd fd is EBADF; a new file reusing the number is a different file', () => {
    const r = runScenario(parseScenario(SCENARIO), createModelTarget());
    // the new guest_memfd took the lowest free fd (the number g had): the memslot binds it
    expect(r.steps[5]!.outcome.result).toBe(r.steps[0]!.outcome.result);
    expect(r.pass, JSON.stringify(r.steps.map((s) => [s.op, s.outcome.errno, s.mismatches]))).toBe(true);
  });
});
