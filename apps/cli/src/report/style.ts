/** The report page's stylesheet (inlined: the page loads nothing). */
export const REPORT_CSS = `
:root { --fg:#1d232a; --dim:#6a737d; --bg:#fff; --panel:#f6f8fa; --line:#d0d7de; --sel:#ddf4ff; --bad:#cf222e; --good:#1a7f37; --warn:#bf8700; --chg:#e8590c; }
* { box-sizing: border-box; }
body { margin:0; font:13px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; color:var(--fg); background:var(--bg); }
code, .mono, .args, .events, .inspector td { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size:12px; }
header { padding:10px 16px; border-bottom:1px solid var(--line); background:var(--panel); }
header h1 { font-size:16px; margin:0 0 4px; }
header .meta { color:var(--dim); }
header .desc { margin-top:4px; max-width:110ch; }
.badge { display:inline-block; padding:1px 8px; border-radius:10px; color:#fff; font-weight:600; margin-right:6px; }
.badge.pass { background:var(--good); } .badge.fail { background:var(--bad); }
nav.tabs { display:flex; gap:4px; padding:6px 16px 0; border-bottom:1px solid var(--line); }
nav.tabs button { border:1px solid var(--line); border-bottom:none; background:var(--panel); padding:4px 12px; cursor:pointer; border-radius:6px 6px 0 0; font:inherit; }
nav.tabs button.active { background:var(--bg); font-weight:600; position:relative; top:1px; }
nav.tabs .hint { margin-left:auto; color:var(--dim); align-self:center; }
main { display:grid; grid-template-columns:minmax(340px, 42%) 1fr; gap:0; min-height:70vh; }
#left { border-right:1px solid var(--line); overflow:auto; max-height:calc(100vh - 120px); position:relative; }
#right { padding:8px 12px; overflow:auto; max-height:calc(100vh - 120px); }
.steps { width:100%; border-collapse:collapse; }
.steps td { border-bottom:1px solid var(--line); padding:3px 6px; vertical-align:top; }
.steps tr.step { cursor:pointer; }
.steps tr.step:hover { background:#f3f4f6; }
.steps tr.step.selected { background:var(--sel); }
.steps tr.step.fail td.mark, .mark.fail { color:var(--bad); font-weight:700; }
.steps tr.step.pass td.mark, .mark.pass { color:var(--good); }
.steps tr.step.disagree { box-shadow: inset 4px 0 0 var(--bad); }
.steps tr.step.skipped td.mark { color:var(--warn); }
.steps .op { font-weight:600; }
.steps .actor { color:var(--dim); }
.args { color:var(--dim); word-break:break-all; }
.detail td { background:#fbfcfd; }
.detail .events div { white-space:pre-wrap; word-break:break-all; }
.ev { color:#0550ae; }
.mismatch { color:var(--bad); }
.diffcol { display:grid; grid-template-columns:1fr 1fr; gap:6px; }
.diffcol > div { border:1px solid var(--line); padding:4px; border-radius:4px; }
.diffcol .disagree { border-color:var(--bad); }
.stats { color:var(--dim); }
.stats b { color:var(--fg); font-weight:600; }
.toolbar { display:flex; flex-wrap:wrap; gap:10px; align-items:center; margin-bottom:6px; }
.toolbar label { white-space:nowrap; }
.lane { border:1px solid var(--line); border-radius:6px; margin:6px 0 10px; padding:6px 8px; break-inside:avoid; }
.lane h3 { font-size:13px; margin:0 0 4px; display:flex; gap:8px; align-items:baseline; flex-wrap:wrap; }
.lane h3 .dim { color:var(--dim); font-weight:400; }
.lane .zoom { margin-left:auto; display:flex; gap:4px; }
.lane .zoom button { font:inherit; padding:0 6px; cursor:pointer; }
.ruler { position:relative; height:16px; color:var(--dim); font-size:11px; margin-left:130px; }
.ruler span { position:absolute; top:0; white-space:nowrap; }
.row { display:flex; align-items:center; height:20px; margin:2px 0; }
.row .name { width:130px; flex:none; color:var(--dim); font-size:12px; overflow:hidden; text-overflow:ellipsis; white-space:nowrap; }
.row .track { position:relative; flex:1; height:18px; background:#f0f2f4; border-radius:3px; overflow:hidden; cursor:crosshair; }
.row .track.grid { background-image:repeating-linear-gradient(to right, transparent 0, transparent calc(var(--page) - 1px), rgba(0,0,0,.18) calc(var(--page) - 1px), rgba(0,0,0,.18) var(--page)); background-color:#f0f2f4; }
.row.changed .track { background:#fff; }
.run { position:absolute; top:0; bottom:0; min-width:1px; }
.run.mixed { background:repeating-linear-gradient(45deg,#888 0,#888 2px,#bbb 2px,#bbb 4px) !important; }
.run.chg { background:var(--chg); }
.run .t { position:absolute; left:3px; right:2px; top:1px; font-size:11px; color:#fff; white-space:nowrap; overflow:hidden; text-overflow:ellipsis; text-shadow:0 0 2px rgba(0,0,0,.6); pointer-events:none; }
.cursor { position:absolute; top:-2px; bottom:-2px; width:2px; background:#000; pointer-events:none; }
.legend { display:flex; flex-wrap:wrap; gap:4px 12px; margin:2px 0 0 130px; font-size:11px; color:var(--dim); }
.legend i { display:inline-block; width:10px; height:10px; border-radius:2px; margin-right:3px; vertical-align:-1px; }
.inspector { border:1px solid var(--line); border-radius:6px; padding:6px 8px; margin:6px 0; background:var(--panel); }
.inspector table { border-collapse:collapse; }
.inspector td { padding:1px 8px 1px 0; }
.notes { color:var(--warn); }
.swim { overflow-x:auto; border:1px solid var(--line); border-radius:6px; margin:6px 0; }
.swim table { border-collapse:collapse; }
.swim th { text-align:left; padding:2px 8px; position:sticky; left:0; background:var(--panel); border-right:1px solid var(--line); white-space:nowrap; }
.swim td { border-left:1px solid #eee; padding:2px; min-width:26px; height:26px; }
.swim td.pt { cursor:pointer; text-align:center; font-size:11px; }
.swim td.pt .box { background:#57606a; color:#fff; border-radius:3px; padding:1px 3px; white-space:nowrap; }
.swim td.pt.completion .box { background:#8c959f; }
.swim td.pt.selected .box { outline:3px solid #0969da; }
.swim td.pt.violation .box { background:var(--bad); }
.swim td.pt.observed .box { background:var(--chg); }
.swim tr.idx td { color:var(--dim); font-size:10px; text-align:center; height:14px; }
.point-detail { border:1px solid var(--line); border-radius:6px; padding:6px 8px; margin:6px 0; }
.point-detail.violation { border-color:var(--bad); background:#fff5f5; }
.point-detail.observed { border-color:var(--chg); background:#fff8f0; }
.schedsel { display:flex; gap:8px; flex-wrap:wrap; margin:6px 0; }
.schedsel button { font:inherit; cursor:pointer; padding:2px 8px; border:1px solid var(--line); background:var(--panel); border-radius:4px; }
.schedsel button.active { border-color:#0969da; background:var(--sel); }
.hidden { display:none !important; }
@media print {
  nav.tabs, .toolbar, .lane .zoom { display:none; }
  main { display:block; }
  #left, #right { max-height:none; overflow:visible; border:none; }
  .steps tr.detail { display:table-row !important; }
  .run { -webkit-print-color-adjust:exact; print-color-adjust:exact; }
}
`;
