// Prints the closing "N passed, N failed, N skipped" line from vitest's JSON report
// and exits non-zero when the test command failed or the report is missing.
import { readFileSync, existsSync } from 'node:fs';

const [reportPath, statusArg] = process.argv.slice(2);
const status = Number(statusArg ?? 1);
if (!reportPath || !existsSync(reportPath)) {
  console.log('test report missing: the test command did not run to completion');
  console.log('0 passed, 1 failed');
  process.exit(1);
}
const report = JSON.parse(readFileSync(reportPath, 'utf8'));
const passed = report.numPassedTests ?? 0;
const failed = (report.numFailedTests ?? 0) + (report.numRuntimeErrorTests ?? 0);
const skipped = (report.numPendingTests ?? 0) + (report.numTodoTests ?? 0);
const failedTotal = failed + (status !== 0 && failed === 0 ? 1 : 0);
console.log(`${passed} passed, ${failedTotal} failed, ${skipped} skipped`);
process.exit(status !== 0 || failedTotal > 0 ? 1 : 0);
