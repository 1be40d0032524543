import type { Element } from '@xmldom/xmldom';
import { Parser, type Result } from 'tap-parser';
import { describe, expect, it } from 'vitest';
import type { ReportCase } from './cases.js';
import { formatJunit } from './junit.js';
import { formatTap } from './tap.js';
import { parseXml } from '../../test-support/parse-xml.js';

const CASES: ReportCase[] = [
  { suite: 'model snp', classname: 'snp/a.yaml', name: 'conversion <shared → private> & "back"', status: 'pass', timeMs: 12 },
  { suite: 'model snp', classname: 'snp/b.yaml', name: 'page state # change', status: 'skip', message: 'host: no KVM_CAP_GUEST_MEMFD' },
  {
    suite: 'kvm default',
    classname: 'memslots/c.yaml',
    name: 'overlap',
    status: 'fail',
    message: 'step 2 set_user_memory_region2: expected errno EINVAL (happened: errno EEXIST)',
    details: '✗ overlap\n    step 2 \x1b[1mset_user_memory_region2\x1b[22m line 7\n      expected: errno EINVAL\n      happened: errno EEXIST',
    timeMs: 3,
  },
  { suite: 'kvm default', classname: 'memslots/d.yaml', name: 'cannot start', status: 'error', message: 'cannot start the VM: EINVAL' },
];

const elements = (parent: Element, tag: string): Element[] => Array.from(parent.getElementsByTagName(tag));

describe('JUnit report', () => {
  it('is well-formed XML with testsuites > testsuite > testcase, counts, and skipped/failure/error children', () => {
    const text = formatJunit('ccmem matrix', CASES, { timestamp: new Date(Date.UTC(2026, 0, 2, 3, 4, 5)), hostname: 'ci-1' });
    expect(text.startsWith('<?xml version="1.0" encoding="UTF-8"?>')).toBe(true);
    const root = parseXml(text);
    expect(root.tagName).toBe('testsuites');
    expect(root.getAttribute('name')).toBe('ccmem matrix');
    expect([root.getAttribute('tests'), root.getAttribute('failures'), root.getAttribute('errors'), root.getAttribute('skipped')]).toEqual(['4', '1', '1', '1']);
    const suites = elements(root, 'testsuite');
    expect(suites.map((s) => [s.getAttribute('name'), s.getAttribute('tests'), s.getAttribute('failures'), s.getAttribute('skipped')])).toEqual([
      ['model snp', '2', '0', '1'],
      ['kvm default', '2', '1', '0'],
    ]);
    // the attributes junit-4.xsd requires of a testsuite
    expect(suites.map((s) => [s.getAttribute('id'), s.getAttribute('timestamp'), s.getAttribute('hostname'), s.getAttribute('time')])).toEqual([
      ['0', '2026-01-02T03:04:05', 'ci-1', '0.012'],
      ['1', '2026-01-02T03:04:05', 'ci-1', '0.003'],
    ]);
    const cases = elements(root, 'testcase');
    expect(cases.map((c) => c.parentNode === suites[0] || c.parentNode === suites[1])).toEqual([true, true, true, true]);
    // attribute values come back exactly, escaping undone
    expect(cases[0]!.getAttribute('name')).toBe('conversion <shared → private> & "back"');
    expect(cases[0]!.getAttribute('classname')).toBe('snp/a.yaml');
    expect(cases[0]!.getAttribute('time')).toBe('0.012');
    expect(cases[0]!.childNodes.length).toBe(0);
    const skipped = elements(cases[1]!, 'skipped');
    expect(skipped).toHaveLength(1);
    expect(skipped[0]!.getAttribute('message')).toBe('host: no KVM_CAP_GUEST_MEMFD');
    const failure = elements(cases[2]!, 'failure')[0]!;
    expect(failure.getAttribute('message')).toBe('step 2 set_user_memory_region2: expected errno EINVAL (happened: errno EEXIST)');
    // the text report, without colour codes (XML 1.0 cannot hold ESC)
    expect(failure.textContent).toBe('✗ overlap\n    step 2 set_user_memory_region2 line 7\n      expected: errno EINVAL\n      happened: errno EEXIST');
    expect(elements(cases[3]!, 'error')[0]!.getAttribute('message')).toBe('cannot start the VM: EINVAL');
  });

  it('an empty report is still a valid document', () => {
    const root = parseXml(formatJunit('ccmem run', []));
    expect(root.tagName).toBe('testsuites');
    expect(root.getAttribute('tests')).toBe('0');
  });
});

describe('TAP report', () => {
  it('parses as TAP 13 with the plan, passes, skips with reasons and failures with diagnostics', async () => {
    const text = formatTap(CASES);
    const results: Result[] = [];
    const parser = new Parser();
    parser.on('assert', (r: Result) => results.push(r));
    const done = new Promise<{ ok: boolean; count: number; pass: number; fail: number; skip: number; plan: { start: number; end: number } }>((resolve) => parser.on('complete', resolve));
    parser.end(text);
    const final = await done;
    expect(final).toMatchObject({ ok: false, count: 4, pass: 2, fail: 2, skip: 1, plan: { start: 1, end: 4 } });
    expect(results.map((r) => r.ok)).toEqual([true, true, false, false]);
    expect(results[1]!.skip).toBe('host: no KVM_CAP_GUEST_MEMFD');
    // a '#' in a name is escaped (not read as a directive) and comes back as written
    expect(results[1]!.name).toBe('model snp: page state # change (snp/b.yaml)');
    expect(results[2]!.diag).toMatchObject({ message: 'step 2 set_user_memory_region2: expected errno EINVAL (happened: errno EEXIST)', severity: 'fail' });
    expect((results[2]!.diag as { details: string }).details).toContain('happened: errno EEXIST');
  });
});
