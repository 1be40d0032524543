/**
 * The runner is the judge of every scenario, so each comparison it makes is pinned here, field
 * by field: an equal value passes, a different one fails, a missing one fails, and an outcome
 * nobody expected fails where docs/scenarios.md ("Outcomes") says it does.
 */
import { describe, expect, it } from 'vitest';
import type { Expectation } from './schema.js';
import { compareOutcome, diffOutcomes, runScenario, sameValue } from './runner.js';
import { parseScenario, tryParseScenario } from './parse.js';
import type { Outcome, Target } from './target.js';

const pass = (e: Expectation, o: Outcome) => expect(compareOutcome(e, o), `${JSON.stringify(e, big)} vs ${JSON.stringify(o, big)}`).toEqual([]);
const fail = (e: Expectation, o: Outcome) => expect(compareOutcome(e, o), `${JSON.stringify(e, big)} vs ${JSON.stringify(o, big)}`).not.toEqual([]);
function big(_k: string, v: unknown) {
  return typeof v === 'bigint' ? `${v}n` : v;
}

const MMIO: Outcome = { exit: { reason: 'KVM_EXIT_MMIO', mmio: { phys_addr: 0x100000, len: 4, is_write: true, data: 0xdeadbeefn } } };
const MEMORY_FAULT: Outcome = {
  errno: 'EFAULT',
  exit: { reason: 'KVM_EXIT_MEMORY_FAULT', memory_fault: { flags: 8, gpa: 0x200000, size: 4096 } },
};
const HYPERCALL: Outcome = { exit: { reason: 'KVM_EXIT_HYPERCALL', hypercall: { nr: 12, args: [0x100000, 1, 0x10], ret: 0, flags: 0 } } };
const INTERNAL: Outcome = { exit: { reason: 'KVM_EXIT_INTERNAL_ERROR', internal: { suberror: 1 } } };
const SYSTEM_EVENT: Outcome = { exit: { reason: 'KVM_EXIT_SYSTEM_EVENT', system_event: { type: 1 } } };

describe('compareOutcome: errno', () => {
  it('equal passes, different fails, missing fails, unexpected fails', () => {
    pass({ errno: 'EINVAL' }, { errno: 'EINVAL' });
    fail({ errno: 'EINVAL' }, { errno: 'EEXIST' });
    fail({ errno: 'EINVAL' }, {});
    fail({}, { errno: 'EINVAL' });
    fail({ value: 0n }, { errno: 'EINVAL', value: 0 });
  });

  it('an EFAULT or EHWPOISON without a memory-fault exit is never excused', () => {
    fail({}, { errno: 'EFAULT' });
    fail({}, { errno: 'EHWPOISON' });
    fail({ value: 1n }, { errno: 'EFAULT', value: 1 });
    fail({ exit: 'KVM_EXIT_MMIO' }, { errno: 'EFAULT', exit: MMIO.exit! });
    fail({ exit: 'KVM_EXIT_MEMORY_FAULT' }, { errno: 'EFAULT' });
    fail({ memory_fault: { gpa: 0x200000 } }, { errno: 'EHWPOISON' });
  });

  it('an expected memory-fault exit accepts KVM_RUN\'s EFAULT and EHWPOISON, nothing else', () => {
    pass({ exit: 'KVM_EXIT_MEMORY_FAULT' }, MEMORY_FAULT);
    pass({ memory_fault: { gpa: 0x200000 } }, MEMORY_FAULT);
    pass({ exit: 'KVM_EXIT_MEMORY_FAULT' }, { ...MEMORY_FAULT, errno: 'EHWPOISON' });
    fail({ exit: 'KVM_EXIT_MEMORY_FAULT' }, { ...MEMORY_FAULT, errno: 'EINVAL' });
    pass({ exit: 'KVM_EXIT_MEMORY_FAULT', errno: 'EFAULT' }, MEMORY_FAULT);
    fail({ exit: 'KVM_EXIT_MEMORY_FAULT', errno: 'EHWPOISON' }, MEMORY_FAULT);
  });

  it('a step expected to fail may leave an exit behind', () => {
    pass({ errno: 'EINVAL' }, { errno: 'EINVAL', exit: MMIO.exit! });
  });
});

describe('compareOutcome: exit reason and exit fields', () => {
  it('reason: equal passes, different fails, missing fails, unexpected fails', () => {
    pass({ exit: 'KVM_EXIT_MMIO' }, MMIO);
    fail({ exit: 'KVM_EXIT_SHUTDOWN' }, MMIO);
    fail({ exit: 'KVM_EXIT_MMIO' }, {});
    fail({}, MMIO);
    fail({ value: 0n }, { ...MMIO, value: 0 });
  });

  const cases: [string, Outcome, Record<string, unknown>, Record<string, unknown>][] = [
    ['mmio', MMIO, { phys_addr: 0x100000, len: 4, is_write: true, data: 0xdeadbeefn }, { phys_addr: 0x100004, len: 8, is_write: false, data: 0xdeadbeeen }],
    ['memory_fault', MEMORY_FAULT, { flags: 8, gpa: 0x200000, size: 4096 }, { flags: 0, gpa: 0x201000, size: 0x200000 }],
    ['hypercall', HYPERCALL, { nr: 12, args: [0x100000, 1, 0x10], ret: 0, flags: 0 }, { nr: 13, args: [0x100000, 2, 0x10], ret: 22, flags: 1 }],
    ['internal', INTERNAL, { suberror: 1 }, { suberror: 3 }],
    ['system_event', SYSTEM_EVENT, { type: 1 }, { type: 2 }],
  ];
  for (const [field, outcome, same, other] of cases) {
    it(`${field}: every field, equal passes, different fails, missing fails; the field names its exit`, () => {
      const exit = outcome.exit!;
      const reason = exit.reason;
      for (const k of Object.keys(same)) {
        pass({ exit: reason, [field]: { [k]: same[k] } } as Expectation, outcome);
        pass({ [field]: { [k]: same[k] } } as Expectation, outcome);
        fail({ exit: reason, [field]: { [k]: other[k] } } as Expectation, outcome);
        // the target reported the exit without this field
        const { [k]: _dropped, ...rest } = (exit as unknown as Record<string, Record<string, unknown>>)[field]!;
        const without = { ...outcome, exit: { ...exit, [field]: rest } } as Outcome;
        fail({ exit: reason, [field]: { [k]: same[k] } } as Expectation, without);
      }
      // the whole exit missing, or another exit
      fail({ exit: reason, [field]: same } as Expectation, {});
      fail({ exit: reason, [field]: same } as Expectation, reason === 'KVM_EXIT_MMIO' ? SYSTEM_EVENT : MMIO);
    });
  }

  it('memory_fault.gpa is compared (a fault at another gpa fails)', () => {
    fail({ exit: 'KVM_EXIT_MEMORY_FAULT', memory_fault: { gpa: 0x100000 } }, MEMORY_FAULT);
    fail({ memory_fault: { flags: 8, gpa: 0x100000, size: 4096 } }, MEMORY_FAULT);
  });

  it('hypercall.args compare element-wise', () => {
    fail({ hypercall: { args: [0x100000, 1] } }, HYPERCALL);
    fail({ hypercall: { args: [0x100000, 1, 0x10, 0] } }, HYPERCALL);
  });
});

describe('compareOutcome: signal and guest exception', () => {
  it('signal: equal passes, different fails, missing fails, unexpected fails', () => {
    pass({ signal: 'SIGBUS' }, { signal: 'SIGBUS' });
    fail({ signal: 'SIGBUS' }, { signal: 'SIGSEGV' });
    fail({ signal: 'SIGBUS' }, {});
    fail({}, { signal: 'SIGBUS' });
    fail({ value: 0n }, { signal: 'SIGBUS', value: 0 });
  });

  it('exception: equal passes, different fails, missing fails, an unexpected #VC or #VE fails', () => {
    pass({ exception: '#VC' }, { exception: '#VC' });
    fail({ exception: '#VC' }, { exception: '#VE' });
    fail({ exception: '#VE' }, {});
    fail({}, { exception: '#VC' });
    fail({}, { exception: '#VE' });
    fail({ ret: 0 }, { exception: '#VE', ret: 0 });
    fail({ value: 0n }, { exception: '#VC', value: 0 });
  });
});

describe('compareOutcome: values', () => {
  it('value: equal passes (any spelling), different fails, missing fails; an unnamed value is not compared', () => {
    pass({ value: 0xcafef00dn }, { value: 0xcafef00d });
    pass({ value: 0xffffffffffffffffn }, { value: 0xffffffffffffffffn });
    fail({ value: 0xcafef00dn }, { value: 0xcafef00en });
    fail({ value: 0xffffffffffffffffn }, { value: 0xfffffffffffffffen });
    fail({ value: 0n }, {});
    pass({}, { value: 7 });
  });

  it('dirty_pages compare as a set: same pages in any order pass; a different set of the same size fails', () => {
    pass({ dirty_pages: [5, 1, 3] }, { dirty_pages: [1, 3, 5] });
    pass({ dirty_pages: [] }, { dirty_pages: [] });
    fail({ dirty_pages: [1, 3, 5] }, { dirty_pages: [1, 3, 6] });
    fail({ dirty_pages: [0, 1] }, { dirty_pages: [1, 2] });
    fail({ dirty_pages: [1] }, { dirty_pages: [1, 2] });
    fail({ dirty_pages: [1, 2] }, { dirty_pages: [1] });
    fail({ dirty_pages: [] }, { dirty_pages: [0] });
    fail({ dirty_pages: [] }, {});
    pass({}, { dirty_pages: [4] });
  });

  it('stats: each named stat equal passes, different fails, missing fails', () => {
    pass({ stats: { pages_4k: 1, pages_2m: 0 } }, { stats: { pages_4k: 1, pages_2m: 0, pages_1g: 0 } });
    fail({ stats: { pages_4k: 1 } }, { stats: { pages_4k: 2 } });
    fail({ stats: { pages_2m: 0, pages_4k: 1 } }, { stats: { pages_2m: 1, pages_4k: 1 } });
    fail({ stats: { pages_4k: 1 } }, { stats: { pages_2m: 1 } });
    fail({ stats: { pages_4k: 0 } }, {});
  });

  for (const f of ['gpa', 'size', 'nr_pages', 'r11'] as const) {
    it(`${f}: equal passes, different fails, missing fails`, () => {
      pass({ [f]: 0x1000 }, { [f]: 0x1000 });
      pass({ [f]: 0 }, { [f]: 0 });
      fail({ [f]: 0x1000 }, { [f]: 0x2000 });
      fail({ [f]: 0 }, { [f]: 0x1000 });
      fail({ [f]: 0x1000 }, {});
    });
  }

  it('ret: equal passes in either spelling, different fails, missing fails, an unexpected failure code fails', () => {
    pass({ ret: 6 }, { ret: 6 });
    pass({ ret: 'FAIL_SIZEMISMATCH' }, { ret: 6, detail: { ret_alias: 'FAIL_SIZEMISMATCH' } });
    pass({ ret: 6 }, { ret: 'FAIL_SIZEMISMATCH', detail: { ret_alias: 6 } });
    fail({ ret: 6 }, { ret: 1, detail: { ret_alias: 'FAIL_INPUT' } });
    fail({ ret: 'FAIL_SIZEMISMATCH' }, { ret: 1, detail: { ret_alias: 'FAIL_INPUT' } });
    fail({ ret: 0 }, {});
    fail({}, { ret: 1 });
    fail({}, { ret: 'npf' });
    fail({}, { ret: 'TDX_PAGE_ALREADY_ACCEPTED' });
    pass({}, { ret: 0 });
    pass({}, { ret: 'TDX_SUCCESS' });
    fail({}, { ret: 'TDX_SUCCESS_NOT' });
  });

  it('params: only the fields named are compared; a different or missing field fails', () => {
    const o: Outcome = { params: { gfn_start: 0x100002, uaddr: 0x7000_2000, len: 0x1000, type: 1, flags: 0 } };
    pass({ params: { gfn_start: 0x100002, len: 0x1000 } }, o);
    pass({ params: {} }, o);
    fail({ params: { len: 0 } }, o);
    fail({ params: { pad: 0 } }, o);
    fail({ params: { len: 0x1000 } }, {});
    fail({ params: { len: 0x1000 } }, { errno: 'EIO' });
    expect(compareOutcome({ params: { uaddr: { ref: 'src', offset: 0 } as unknown as number } }, o)).toEqual(['expected params.uaddr src: a name cannot be resolved here']);
  });

  it('params: a value naming an earlier step is resolved before the comparison', () => {
    const yaml = (off: string) => `name: t
vm: { type: snp }
steps:
  - mmap: { size: 8KiB }
    as: src
  - snp_launch_update: { gfn_start: 0x100000, uaddr: src, len: 8KiB, type: KVM_SEV_SNP_PAGE_TYPE_NORMAL }
    expect: { params: { uaddr: src+${off} } }
`;
    const target: Target = {
      name: 'model',
      begin() {},
      end() {},
      execute: (s) => (s.op === 'mmap' ? { result: 0x7000_0000 } : { params: { uaddr: 0x7000_1000 } }),
    };
    const run = (off: string) => runScenario(parseScenario(yaml(off)), target).steps[1]!;
    expect(run('4KiB').mismatches).toEqual([]);
    expect(run('8KiB').mismatches.join()).toMatch(/expected params.uaddr/);
    expect(run('8KiB').mismatches.join()).toMatch(/expected params.uaddr/);
  });
});

describe('diffOutcomes: every compared field', () => {
  it('reports each field that differs, and nothing when they agree', () => {
    const all: Outcome = {
      errno: 'EFAULT',
      signal: 'SIGBUS',
      exception: '#VC',
      value: 1n,
      exit: MEMORY_FAULT.exit!,
      dirty_pages: [1, 2],
      gpa: 0x1000,
      size: 0x2000,
      params: { len: 0x1000 },
      ret: 0,
    };
    expect(diffOutcomes(all, { ...all, dirty_pages: [2, 1] })).toEqual([]);
    const changes: [keyof Outcome, unknown, string][] = [
      ['errno', 'EHWPOISON', 'errno'],
      ['signal', 'SIGSEGV', 'signal'],
      ['exception', '#VE', 'exception'],
      ['value', 2n, 'value'],
      ['exit', { reason: 'KVM_EXIT_MEMORY_FAULT', memory_fault: { flags: 8, gpa: 0x300000, size: 4096 } }, 'memory_fault.gpa'],
      ['exit', MMIO.exit, 'exit'],
      ['dirty_pages', [1, 3], 'dirty_pages'],
      ['gpa', 0x3000, 'gpa'],
      ['size', 0x1000, 'size'],
      ['params', { len: 0 }, 'params.len'],
      ['ret', 6, 'ret'],
    ];
    for (const [k, v, field] of changes) {
      const d = diffOutcomes(all, { ...all, [k]: v } as Outcome);
      expect(d, field).toHaveLength(1);
      expect(d[0]!.startsWith(`${field}: `), d[0]).toBe(true);
      const { [k]: _gone, ...missing } = all;
      expect(diffOutcomes(all, missing as Outcome).length, `${k} missing`).toBeGreaterThan(0);
    }
  });
});

describe('assert: fields', () => {
  const sc = (fields: string) => `name: t\nvm: { type: sw-protected }\nsteps:\n  - assert: { what: spte, gfn: 0x100${fields} }\n`;
  const target = (state: Record<string, unknown>): Target => ({
    name: 'model',
    begin() {},
    end() {},
    execute: () => ({ detail: state }),
  });

  it('equal passes, different fails, missing from the report fails', () => {
    const run = (fields: string, state: Record<string, unknown>) => runScenario(parseScenario(sc(fields)), target(state)).steps[0]!;
    expect(run(', present: true, level: 2', { present: true, level: 2 }).pass).toBe(true);
    expect(run(', level: 2', { level: 1 }).mismatches).toEqual(['expected level 2, happened 1']);
    expect(run(', present: true', { present: false }).pass).toBe(false);
    expect(run(', level: 2', { present: true }).mismatches).toEqual(['expected level 2, the target reported no level']);
    const r = runScenario(parseScenario(sc(', level: 1')), { ...target({}), execute: () => ({ errno: 'EINVAL' }) }).steps[0]!;
    expect(r.pass).toBe(false);
    expect(r.mismatches[0]).toMatch(/could not be inspected/);
  });

  it('a field the state does not report is an error in the file, with its place', () => {
    const r = tryParseScenario(sc(', presnet: true'), 'typo.yaml');
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.errors).toHaveLength(1);
    expect(r.errors[0]).toMatchObject({ file: 'typo.yaml', line: 4, field: 'steps[0].assert.presnet' });
    expect(r.errors[0]!.column).toBeGreaterThan(1);
    expect(r.errors[0]!.message).toMatch(/assert spte reports no field "presnet"/);
    // a field another kind of state reports is still wrong here
    expect(tryParseScenario(sc(', assigned: true')).ok).toBe(false);
    expect(tryParseScenario(sc(', present: true, level: 1')).ok).toBe(true);
  });
});

describe('sameValue: numeric strings', () => {
  it('an assert value written with digit-group separators compares by value', () => {
    expect(sameValue('0x1_0000_4000', 0x1_0000_4000)).toBe(true);
    expect(sameValue('1_000', 1000)).toBe(true);
    expect(sameValue('0x1_0000_4000', 0x1_0000_5000)).toBe(false);
    expect(sameValue('0x_1', 1)).toBe(false);
    expect(sameValue('4K', 4)).toBe(false);
  });
});

describe('compareOutcome: what each mismatch says', () => {
  it('an unexpected errno: "expected success" when nothing else was named, "expected no errno" when an exit or a value was', () => {
    expect(compareOutcome({}, { errno: 'EINVAL' })).toEqual(['expected success (happened: errno EINVAL)']);
    expect(compareOutcome({ exit: 'KVM_EXIT_SHUTDOWN' }, { errno: 'EIO', exit: { reason: 'KVM_EXIT_SHUTDOWN' } })).toEqual([
      'expected no errno (happened: errno EIO, exit KVM_EXIT_SHUTDOWN)',
    ]);
    const values: Expectation[] = [
      { value: 1n },
      { stat: { st_size: 1 } },
      { status: [0] },
      { dirty_pages: [1] },
      { dirty_gfns: [{ slot: 1, offset: 0 }] },
      { gpa: 1 },
      { size: 1 },
      { nr_pages: 1 },
      { r11: 1 },
      { params: { len: 1 } },
      { ret: 0 },
      { stats: { pages_4k: 1 } },
    ];
    for (const e of values) {
      const m = compareOutcome(e, { errno: 'EIO' });
      expect(m[0], JSON.stringify(e, big)).toBe('expected no errno (happened: errno EIO)');
    }
  });

  it('signal and guest exception', () => {
    expect(compareOutcome({ signal: 'SIGBUS' }, { signal: 'SIGSEGV' })).toEqual(['expected signal SIGBUS (happened: signal SIGSEGV)']);
    expect(compareOutcome({}, { signal: 'SIGBUS' })).toEqual(['expected no signal (happened: signal SIGBUS)']);
    expect(compareOutcome({ exception: '#VC' }, { exception: '#VE' })).toEqual(['expected guest exception #VC (happened: guest exception #VE)']);
    expect(compareOutcome({}, { exception: '#VC' })).toEqual(['expected no guest exception (happened: guest exception #VC)']);
  });

  it('exit', () => {
    expect(compareOutcome({}, { exit: { reason: 'KVM_EXIT_SHUTDOWN' } })).toEqual(['expected no exit (happened: exit KVM_EXIT_SHUTDOWN)']);
    expect(compareOutcome({ exit: 'KVM_EXIT_MMIO' }, { exit: { reason: 'KVM_EXIT_SHUTDOWN' } })).toEqual([
      'expected exit KVM_EXIT_MMIO (happened: exit KVM_EXIT_SHUTDOWN)',
    ]);
  });

  it('value: what happened instead, or the value read', () => {
    expect(compareOutcome({ value: 1n }, {})).toEqual(['expected value 1, happened ok']);
    expect(compareOutcome({ value: 1n }, { value: 2n })).toEqual(['expected value 1, happened 2']);
    expect(compareOutcome({ value: 0n }, { errno: 'EIO' })).toEqual([
      'expected no errno (happened: errno EIO)',
      'expected value 0, happened errno EIO',
    ]);
  });

  it('dirty_pages: both lists sorted', () => {
    expect(compareOutcome({ dirty_pages: [2, 1] }, { dirty_pages: [3, 0] })).toEqual(['expected dirty_pages [1, 2], happened [0, 3]']);
    expect(compareOutcome({ dirty_pages: [2, 1] }, {})).toEqual(['expected dirty_pages [1, 2], happened ok']);
  });

  it('gpa, size, nr_pages, r11', () => {
    expect(compareOutcome({ gpa: 0x1000 }, {})).toEqual(['expected gpa 0x1000, happened nothing']);
    expect(compareOutcome({ nr_pages: 2 }, { nr_pages: 1 })).toEqual(['expected nr_pages 2, happened 1']);
  });

  it('ret, and a failure code nobody expected', () => {
    expect(compareOutcome({ ret: 6 }, { ret: 1 })).toEqual(['expected ret 6, happened 1']);
    expect(compareOutcome({}, { ret: 1 })).toEqual(['expected a successful return code (happened: ret 1)']);
  });
});

describe('compareOutcome: status (move_pages)', () => {
  it('equal passes, different fails, missing fails, an unnamed status is not compared', () => {
    pass({ status: [0, -2, -14] }, { status: [0, -2, -14] });
    pass({ status: [] }, { status: [] });
    fail({ status: [0, -2] }, { status: [0, -14] });
    fail({ status: [0, -2] }, { status: [-2, 0] });
    fail({ status: [0] }, { status: [0, 0] });
    fail({ status: [0, 0] }, { status: [0] });
    fail({ status: [] }, {});
    pass({}, { status: [1] });
  });

  it('says both lists, or what happened instead', () => {
    expect(compareOutcome({ status: [0, -2] }, { status: [0, -14] })).toEqual(['expected status [0, -2], happened [0, -14]']);
    expect(compareOutcome({ status: [0] }, {})).toEqual(['expected status [0], happened ok']);
  });
});

describe('compareOutcome: stat (fstat)', () => {
  const o: Outcome = { stat: { st_size: 0x4000, st_blksize: 4096, distinct_inode: true } };

  it('each named field: equal passes, different fails, missing fails; only the named fields are compared', () => {
    pass({ stat: { st_size: 0x4000, st_blksize: 4096, distinct_inode: true } }, o);
    pass({ stat: { st_size: 0x4000 } }, o);
    pass({ stat: { st_blksize: 4096 } }, o);
    pass({ stat: { distinct_inode: true } }, o);
    pass({ stat: {} }, o);
    fail({ stat: { st_size: 0x5000 } }, o);
    fail({ stat: { st_blksize: 512 } }, o);
    fail({ stat: { distinct_inode: false } }, o);
    fail({ stat: { st_size: 0x4000 } }, {});
    fail({ stat: { distinct_inode: false } }, { stat: { st_size: 0x4000, st_blksize: 4096 } });
    pass({}, o);
  });

  it('a field given as undefined is not named', () => {
    pass({ stat: { st_size: undefined, st_blksize: 4096 } }, o);
  });

  it('says the field, its value and what happened', () => {
    expect(compareOutcome({ stat: { st_size: 0x5000 } }, o)).toEqual(['expected stat.st_size 0x5000, happened 0x4000']);
    expect(compareOutcome({ stat: { st_size: 1 } }, {})).toEqual(['expected stat.st_size 1, happened ok']);
    expect(compareOutcome({ stat: { distinct_inode: false } }, { stat: { st_size: 1, st_blksize: 2 } })).toEqual([
      'expected stat.distinct_inode false, happened stat {"st_size":1,"st_blksize":2}',
    ]);
  });
});

describe('compareOutcome: dirty_gfns (dirty ring entries)', () => {
  const o: Outcome = {
    dirty_gfns: [
      { slot: 1, offset: 0 },
      { slot: 1, offset: 7 },
      { slot: 0x10001, offset: 2 },
    ],
  };

  it('in ring order: equal passes; another order, entry, length or none fails', () => {
    pass({ dirty_gfns: [{ slot: 1, offset: 0 }, { slot: 1, offset: 7 }, { slot: 0x10001, offset: 2 }] }, o);
    pass({ dirty_gfns: [] }, { dirty_gfns: [] });
    fail({ dirty_gfns: [{ slot: 1, offset: 7 }, { slot: 1, offset: 0 }, { slot: 0x10001, offset: 2 }] }, o);
    fail({ dirty_gfns: [{ slot: 1, offset: 0 }, { slot: 1, offset: 7 }, { slot: 1, offset: 2 }] }, o);
    fail({ dirty_gfns: [{ slot: 2, offset: 0 }, { slot: 1, offset: 7 }, { slot: 0x10001, offset: 2 }] }, o);
    fail({ dirty_gfns: [{ slot: 1, offset: 0 }, { slot: 1, offset: 7 }] }, o);
    fail({ dirty_gfns: [{ slot: 1, offset: 0 }, { slot: 1, offset: 7 }, { slot: 0x10001, offset: 2 }, { slot: 1, offset: 8 }] }, o);
    fail({ dirty_gfns: [] }, o);
    fail({ dirty_gfns: [] }, {});
    fail({ dirty_gfns: [{ slot: 1, offset: 0 }] }, {});
    pass({}, o);
  });

  it('says both lists as slot:offset, or what happened instead', () => {
    expect(compareOutcome({ dirty_gfns: [{ slot: 1, offset: 7 }, { slot: 1, offset: 0 }] }, { dirty_gfns: o.dirty_gfns!.slice(0, 2) })).toEqual([
      'expected dirty_gfns [1:7, 1:0], happened [1:0, 1:7]',
    ]);
    expect(compareOutcome({ dirty_gfns: [{ slot: 0x10001, offset: 2 }] }, {})).toEqual(['expected dirty_gfns [0x10001:2], happened ok']);
  });
});

describe('compareOutcome: stats wording', () => {
  it('a stat the target lacks, or no stats at all, is said so', () => {
    expect(compareOutcome({ stats: { pages_4k: 1 } }, { stats: { pages_4k: 2 } })).toEqual(['expected stats.pages_4k 1, happened 2']);
    expect(compareOutcome({ stats: { pages_4k: 1 } }, { stats: { pages_2m: 1 } })).toEqual(['expected stats.pages_4k 1, happened no such stat']);
    expect(compareOutcome({ stats: { pages_4k: 1 } }, {})).toEqual(['expected stats.pages_4k 1, happened no stats from this target']);
  });
});

describe('compareOutcome: vendor return codes that mean success', () => {
  it('0 as a number or bigint, SUCCESS, or a name ending in _SUCCESS, in either spelling', () => {
    pass({}, { ret: 0 });
    pass({}, { ret: 0n });
    pass({}, { ret: 'SUCCESS' });
    pass({}, { ret: 'TDX_SUCCESS' });
    pass({}, { ret: 1, detail: { ret_alias: 'TDX_SUCCESS' } });
    pass({}, { ret: 'OK_NAME', detail: { ret_alias: 0 } });
    fail({}, { ret: 1n });
    fail({}, { ret: 'XSUCCESS' });
    fail({}, { ret: 'SUCCESS_NOT' });
    fail({}, { ret: 1, detail: { ret_alias: 'FAIL_INPUT' } });
  });
});

describe('compareOutcome: exit fields', () => {
  it('a field given as undefined is not named', () => {
    pass({ exit: 'KVM_EXIT_MMIO', mmio: { len: undefined, is_write: true } }, MMIO);
    pass({ mmio: { phys_addr: undefined } }, MMIO);
  });
});

describe('sameValue', () => {
  it('numbers, bigints and numeric strings compare by value', () => {
    expect(sameValue(16, '0x10')).toBe(true);
    expect(sameValue('16', 16n)).toBe(true);
    expect(sameValue('10', 10)).toBe(true);
    expect(sameValue('10', 1)).toBe(false);
    expect(sameValue(16, 17n)).toBe(false);
    expect(sameValue(0, '0x0')).toBe(true);
    // decimal digit groups of any length, with or without `_` between them
    expect(sameValue('0100', 100)).toBe(true);
    expect(sameValue('10_000', 10_000)).toBe(true);
    expect(sameValue('0x10_00', 0x1000)).toBe(true);
    expect(sameValue('10_000', 1000)).toBe(false);
  });

  it('lists compare element-wise, and a list never equals a single value', () => {
    expect(sameValue([1, '0x10'], [1n, 16])).toBe(true);
    expect(sameValue([1, 2], [1, 3])).toBe(false);
    expect(sameValue([1, 2], [1])).toBe(false);
    expect(sameValue([1], 1)).toBe(false);
    expect(sameValue(1, [1])).toBe(false);
    expect(sameValue(['a'], 'a')).toBe(false);
    expect(sameValue([], [])).toBe(true);
  });

  it('other values compare as text', () => {
    expect(sameValue('private', 'private')).toBe(true);
    expect(sameValue('private', 'shared')).toBe(false);
    expect(sameValue(true, true)).toBe(true);
    expect(sameValue(true, false)).toBe(false);
    expect(sameValue(1.5, 1.5)).toBe(true);
    expect(sameValue(1.5, '1.5')).toBe(true);
    expect(sameValue(1.5, 2.5)).toBe(false);
    // a negative number is no numeric string of the scenario syntax: it compares as text
    expect(sameValue(-1, '-1')).toBe(true);
    expect(sameValue('-1', -1)).toBe(true);
    expect(sameValue(-1, '-2')).toBe(false);
  });

  it('nothing and null equal only themselves, not their names', () => {
    expect(sameValue(undefined, undefined)).toBe(true);
    expect(sameValue(null, null)).toBe(true);
    expect(sameValue(undefined, 'undefined')).toBe(false);
    expect(sameValue('undefined', undefined)).toBe(false);
    expect(sameValue(null, 'null')).toBe(false);
    expect(sameValue('null', null)).toBe(false);
    expect(sameValue(null, undefined)).toBe(false);
    expect(sameValue(undefined, null)).toBe(false);
    expect(sameValue(0, undefined)).toBe(false);
    expect(sameValue(undefined, 0)).toBe(false);
    expect(sameValue(0, null)).toBe(false);
    expect(sameValue(null, 0)).toBe(false);
  });
});

describe('sameValue: mappings', () => {
  it('compare field by field: the same fields with the same values, in any order and spelling', () => {
    expect(sameValue({ slot: 1, start: 0x10 }, { start: '0x10', slot: 1n })).toBe(true);
    expect(sameValue({}, {})).toBe(true);
    expect(sameValue({ slot: 1 }, { slot: 2 })).toBe(false);
    expect(sameValue({ slot: 1 }, { slot: 1, start: 0 })).toBe(false);
    expect(sameValue({ slot: 1, start: 0 }, { slot: 1 })).toBe(false);
    expect(sameValue({ slot: 1 }, { start: 1 })).toBe(false);
    expect(sameValue({ slot: 1, gone: undefined }, { slot: 1 })).toBe(true);
    expect(sameValue({ a: { b: [1, { c: 2 }] } }, { a: { b: [1, { c: 2 }] } })).toBe(true);
    expect(sameValue({ a: { b: [1, { c: 2 }] } }, { a: { b: [1, { c: 3 }] } })).toBe(false);
  });

  it('a mapping never equals a scalar, a list or its text', () => {
    expect(sameValue({ slot: 1 }, '[object Object]')).toBe(false);
    expect(sameValue('[object Object]', { slot: 1 })).toBe(false);
    expect(sameValue({}, [])).toBe(false);
    expect(sameValue({ 0: 1 }, [1])).toBe(false);
    expect(sameValue({ slot: 1 }, null)).toBe(false);
    expect(sameValue({ slot: 1 }, undefined)).toBe(false);
  });

  it('an assert value listing mappings fails when a reported entry differs', () => {
    const sc = parseScenario('name: t\nvm: { type: sw-protected }\nsteps:\n  - assert: { what: gmem, fd: 3, offset: 0, bindings: [{ slot: 1, pgoff: 0 }] }\n');
    const target = (bindings: unknown): Target => ({ name: 'model', begin() {}, end() {}, execute: () => ({ detail: { bindings } }) });
    expect(runScenario(sc, target([{ slot: 1, pgoff: 0 }])).pass).toBe(true);
    const r = runScenario(sc, target([{ slot: 2, pgoff: 0 }])).steps[0]!;
    expect(r.pass).toBe(false);
    expect(r.mismatches).toEqual(['expected bindings [{ slot: 1, pgoff: 0 }], happened [{ slot: 2, pgoff: 0 }]']);
  });
});

describe('compareOutcome: params wording', () => {
  it('a field the struct lacks, no struct at all, or the value copied back', () => {
    const o: Outcome = { params: { len: 0x1000 } };
    expect(compareOutcome({ params: { len: 0 } }, o)).toEqual(['expected params.len 0, happened 0x1000']);
    expect(compareOutcome({ params: { pad: 0 } }, o)).toEqual(['expected params.pad 0, happened no such field']);
    expect(compareOutcome({ params: { len: 1 } }, {})).toEqual(['expected params.len 1, happened ok']);
  });
});

describe('assert: values of every shape', () => {
  const sc = (fields: string) => parseScenario(`name: t\nvm: { type: tdx }\nsteps:\n  - assert: { what: stats${fields} }\n`);
  const run = (fields: string, state: Record<string, unknown>) =>
    runScenario(sc(fields), { name: 'model', begin() {}, end() {}, execute: () => ({ detail: state }) }).steps[0]!;

  it('a mapping expected where the target reports a scalar names every sub-field it expected', () => {
    expect(run(', host: { rmpupdates: 1, psmashes: 2 }', { host: 7 }).mismatches).toEqual(['expected host to hold rmpupdates, psmashes, happened 7']);
  });

  it('a list compares as a whole, element by element', () => {
    expect(run(', bugReasons: [a, b]', { bugReasons: ['a', 'b'] }).mismatches).toEqual([]);
    expect(run(', bugReasons: [a, b]', { bugReasons: ['a', 'c'] }).mismatches).toEqual(['expected bugReasons [a, b], happened [a, c]']);
    expect(run(', bugReasons: [a, b]', { bugReasons: ['a'] }).mismatches).toEqual(['expected bugReasons [a, b], happened [a]']);
  });

  it('null is a value: it equals only null', () => {
    expect(run(', mrtd: null', { mrtd: null }).mismatches).toEqual([]);
    expect(run(', mrtd: null', { mrtd: 'ab' }).mismatches).toEqual(['expected mrtd null, happened ab']);
    expect(run(', mrtd: ab', { mrtd: null }).mismatches).toEqual(['expected mrtd ab, happened null']);
  });
});

describe('sameValue: objects that are not mappings', () => {
  it('a mapping without a prototype compares field by field; a class instance as text', () => {
    const bare = (v: Record<string, unknown>) => Object.assign(Object.create(null) as Record<string, unknown>, v);
    expect(sameValue(bare({ a: 1 }), { a: 1 })).toBe(true);
    expect(sameValue(bare({ a: 1 }), bare({ a: 2 }))).toBe(false);
    expect(sameValue(new Date(0), new Date(0))).toBe(true);
    expect(sameValue(new Date(0), new Date(86_400_000))).toBe(false);
  });
});
