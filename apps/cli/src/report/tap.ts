/**
 * TAP version 13 (https://testanything.org/tap-version-13-specification.html): a plan, then
 * `ok N - name`, `ok N - name # SKIP reason`, or `not ok N - name` followed by a YAML block with
 * the message and the text report.
 */
import { plainText, type ReportCase } from './cases.js';

/** a TAP description: one line, `#` escaped (it would start a directive) */
function description(s: string): string {
  return plainText(s).replace(/[\r\n]+/g, ' ').replace(/\\/g, '\\\\').replace(/#/g, '\\#');
}

/** a YAML block scalar, indented under `key: |-` */
function block(key: string, text: string): string[] {
  return [`  ${key}: |-`, ...plainText(text).split('\n').map((l) => `    ${l}`)];
}

export function formatTap(cases: readonly ReportCase[]): string {
  const lines = ['TAP version 13', `1..${cases.length}`];
  cases.forEach((c, i) => {
    const n = i + 1;
    const name = description(`${c.suite}: ${c.name}${c.classname && c.classname !== c.name ? ` (${c.classname})` : ''}`);
    if (c.status === 'pass') lines.push(`ok ${n} - ${name}`);
    else if (c.status === 'skip') lines.push(`ok ${n} - ${name} # SKIP ${description(c.message ?? '')}`);
    else {
      lines.push(`not ok ${n} - ${name}`, '  ---', ...block('message', c.message ?? c.status), `  severity: ${c.status === 'error' ? 'error' : 'fail'}`);
      if (c.details && c.details !== c.message) lines.push(...block('details', c.details));
      lines.push('  ...');
    }
  });
  return `${lines.join('\n')}\n`;
}
