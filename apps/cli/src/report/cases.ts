/**
 * What `--reporter junit|tap` reports: one test case per scenario (run, diff), per matrix row,
 * or per exploration, grouped in suites.
 */
export type CaseStatus = 'pass' | 'fail' | 'skip' | 'error';

export interface ReportCase {
  /** the suite (JUnit <testsuite>) the case belongs to, e.g. `model snp` for a matrix row */
  suite: string;
  /** JUnit `classname`: the scenario file */
  classname: string;
  name: string;
  status: CaseStatus;
  /** one line: why it failed or was skipped */
  message?: string;
  /** the full text report of a failure */
  details?: string;
  timeMs?: number;
}

/** Strip ANSI colour codes and characters XML 1.0 cannot hold. */
export function plainText(s: string): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/\x1b\[[0-9;]*m/g, '').replace(/[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffe\uffff]/g, '');
}
