/**
 * JUnit XML, the shape CI dashboards read (Jenkins, GitLab, GitHub test reporters):
 * `<testsuites>` with one `<testsuite>` per group, `<testcase classname name time>`, and in a case
 * `<failure message type>` (with the text report), `<error message>` or `<skipped message/>`.
 */
import { hostname } from 'node:os';
import { XMLBuilder } from 'fast-xml-parser';
import { plainText, type ReportCase } from './cases.js';

const seconds = (ms: number) => (ms / 1000).toFixed(3);

function counts(cases: readonly ReportCase[]) {
  return {
    '@_tests': cases.length,
    '@_failures': cases.filter((c) => c.status === 'fail').length,
    '@_errors': cases.filter((c) => c.status === 'error').length,
    '@_skipped': cases.filter((c) => c.status === 'skip').length,
    '@_time': seconds(cases.reduce((t, c) => t + (c.timeMs ?? 0), 0)),
  };
}

function testcase(c: ReportCase) {
  const el: Record<string, unknown> = {
    '@_classname': plainText(c.classname),
    '@_name': plainText(c.name),
    '@_time': seconds(c.timeMs ?? 0),
  };
  const message = plainText(c.message ?? '');
  if (c.status === 'skip') el.skipped = { '@_message': message };
  else if (c.status === 'fail') el.failure = { '@_message': message, '@_type': 'failure', '#text': plainText(c.details ?? message) };
  else if (c.status === 'error') el.error = { '@_message': message, '@_type': 'error', '#text': plainText(c.details ?? message) };
  return el;
}

export interface JunitOptions {
  /** when the run started (default: now); `timestamp` as ISO 8601 without a zone, as junit-4.xsd has it */
  timestamp?: Date;
  /** default: this machine's name */
  hostname?: string;
}

/** The JUnit document for `cases` (suites in order of first appearance). */
export function formatJunit(title: string, cases: readonly ReportCase[], o: JunitOptions = {}): string {
  const timestamp = (o.timestamp ?? new Date()).toISOString().slice(0, 19);
  const host = o.hostname ?? hostname();
  const suites = new Map<string, ReportCase[]>();
  for (const c of cases) {
    const list = suites.get(c.suite);
    if (list) list.push(c);
    else suites.set(c.suite, [c]);
  }
  const doc = {
    '?xml': { '@_version': '1.0', '@_encoding': 'UTF-8' },
    testsuites: {
      '@_name': plainText(title),
      ...counts(cases),
      testsuite: [...suites].map(([name, list], id) => ({
        '@_name': plainText(name),
        ...counts(list),
        '@_id': id,
        '@_timestamp': timestamp,
        '@_hostname': plainText(host),
        testcase: list.map(testcase),
      })),
    },
  };
  const builder = new XMLBuilder({ ignoreAttributes: false, attributeNamePrefix: '@_', format: true, suppressEmptyNode: true, processEntities: true });
  return builder.build(doc) as string;
}
