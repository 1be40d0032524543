/**
 * `ccmem report`: one self-contained HTML file (inline CSS and script, the data as JSON in
 * the page, nothing loaded from anywhere) that draws a run, a model/kvm comparison or an
 * exploration (docs/report.md).
 */
import type { ReportData } from '@ccmem/scenario';
import { jsonReplacer } from '@ccmem/scenario';
import { reportClient } from './client.js';
import { REPORT_CSS } from './style.js';

/** text safe inside an HTML element */
export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

/** JSON that can sit inside <script>: no "</script", no "<!--", no U+2028/2029 */
export function scriptJson(value: unknown): string {
  return JSON.stringify(value, jsonReplacer)
    .replace(/</g, '\\u003c')
    .replace(/\u2028/g, '\\u2028')
    .replace(/\u2029/g, '\\u2029');
}

/** The page for `data`. */
export function renderReportHtml(data: ReportData): string {
  // the script is the compiled body of reportClient(); a bundler's name-keeping helper is
  // defined as the identity so the source runs as it was compiled
  const script = `"use strict";var __name=function(f){return f};(${reportClient.toString()})();`;
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:">
<title>${escapeHtml(`ccmem ${data.kind}: ${data.title}`)}</title>
<style>${REPORT_CSS}</style>
</head>
<body>
<div id="app"></div>
<script type="application/json" id="ccmem-data">${scriptJson(data)}</script>
<script>${script.replace(/<\/script/gi, '<\\/script')}</script>
</body>
</html>
`;
}
