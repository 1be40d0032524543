/**
 * JUnit XML, the shape CI dashboards read (Jenkins, GitLab, GitHub test reporters):
 * `<testsuites>` with one `<testsuite>` per group, `<testcase classname name time>`, and in a case
 * `<failure message type>` (with the text report), `<error message>` or `<skipped message/>`.
 */
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

/** The JUnit document for `cases` (suites in order of first appearance). */
export function formatJunit(title: string, cases: readonly ReportCase[]): string {
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
      testsuite: [...suites].map(([name, list]) => ({ '@_name': plainText(name), ...counts(list), testcase: list.map(testcase) })),
    },
  };
  const builder = new XMLBuilder({ ignoreAttributes: false, attributeNamePrefix: '@_', format: true, suppressEmptyNode: true, processEntities: true });
  return builder.build(doc) as string;
}
