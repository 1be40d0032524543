/// <reference lib="dom" />
/**
 * The report page's script, in plain DOM. `renderReportHtml` inlines this function's source
 * (Function.prototype.toString), so it must not refer to anything outside its own body: no
 * imports at run time, no helpers from the module. It reads the report data from the
 * `<script type="application/json" id="ccmem-data">` element of the page.
 *
 * Address-space lanes are drawn as runs: each visible run is one positioned element, and the
 * runs narrower than a pixel are merged into one element per pixel, so a lane costs at most
 * O(width · log runs) whatever the slot's size.
 */
import type { ReportData, ReportEvent, ReportOutcome, ReportSchedule, ReportStep, Run, SchedulePoint, SnapshotSlot, StateSnapshot } from '@ccmem/scenario';

export function reportClient(): void {
  const dataEl = document.getElementById('ccmem-data');
  const data = JSON.parse(dataEl?.textContent ?? '{}') as ReportData;
  const LAYERS = ['memslot', 'dirty', 'attributes', 'mapping', 'mirror', 'shadow', 'gmem', 'rmp', 'directmap', 'sept'];
  const TITLES: Record<string, string> = {
    memslot: 'memslot flags',
    dirty: 'dirty bits',
    attributes: 'attributes',
    mapping: 'mapping (direct)',
    mirror: 'mapping (mirror)',
    shadow: 'mapping (shadow)',
    gmem: 'guest_memfd',
    rmp: 'SNP RMP',
    directmap: 'SNP directmap',
    sept: 'TDX S-EPT',
  };
  const MIN_VIEW = 8;

  type View = 'run' | 'explore';
  const ui = {
    view: (data.kind === 'explore' ? 'explore' : 'run') as View,
    step: 0,
    sched: 0,
    point: 0,
    gfn: null as number | null,
    layers: new Set<string>(LAYERS),
    changes: true,
    zoom: new Map<string, [number, number]>(),
    renders: 0,
  };

  /* ---------------------------------------------------------------- small helpers */

  type Child = Node | string | null | undefined | false;
  function h(tag: string, attrs: Record<string, string | number | boolean | undefined> | null, ...children: Child[]): HTMLElement {
    const el = document.createElement(tag);
    if (attrs) {
      for (const [k, v] of Object.entries(attrs)) {
        if (v === undefined || v === false) continue;
        if (k === 'class') el.className = String(v);
        else el.setAttribute(k, v === true ? '' : String(v));
      }
    }
    for (const c of children) if (c !== null && c !== undefined && c !== false) el.append(c);
    return el;
  }
  const hex = (n: number) => `0x${n.toString(16)}`;
  function size(pages: number): string {
    const b = pages * 4096;
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
    let v = b;
    let u = 0;
    while (v >= 1024 && u < units.length - 1 && v % 1024 === 0) {
      v /= 1024;
      u++;
    }
    if (v >= 1024 && u < units.length - 1) {
      while (v >= 1024 && u < units.length - 1) {
        v /= 1024;
        u++;
      }
      return `${v.toFixed(1)} ${units[u]}`;
    }
    return `${v} ${units[u]}`;
  }
  function hashColor(s: string): string {
    let x = 0;
    for (let i = 0; i < s.length; i++) x = (x * 31 + s.charCodeAt(i)) | 0;
    return `hsl(${Math.abs(x) % 360} 55% 45%)`;
  }
  function color(layer: string, label: string): string {
    const has = (w: string) => label.includes(w);
    switch (layer) {
      case 'attributes':
        return has('private') ? '#8250df' : '#4ac26b';
      case 'memslot':
        return has('INVALID') ? '#cf222e' : has('LOG_DIRTY') ? '#0969da' : has('READONLY') ? '#9a6700' : '#6e7781';
      case 'dirty':
        return '#24292f';
      case 'mapping':
        return has('1G') ? '#033d8b' : has('2M') ? '#0550ae' : '#218bff';
      case 'mirror':
        return has('1G') ? '#772057' : has('2M') ? '#99286e' : '#bf3989';
      case 'shadow':
        return has('1G') ? '#3d2c00' : has('2M') ? '#7d4e00' : '#bf8700';
      case 'gmem':
        return has('poisoned') ? '#cf222e' : has('revoked') ? '#8c959f' : has('device') ? '#6639ba' : has('prepared') ? '#1b7c83' : '#3fb5a8';
      case 'rmp':
        return has('vmsa') ? '#6e40c9' : has('validated') ? '#a40e26' : has('assigned') ? '#fb8f44' : '#8c959f';
      case 'directmap':
        return has('unmapped') ? '#cf222e' : has('1G') ? '#116329' : has('2M') ? '#2da44e' : '#4ac26b';
      case 'sept':
        return has('BLOCKED') ? '#cf222e' : has('PENDING') ? '#d4a72c' : has('PRESENT') ? '#1a7f37' : '#8c959f';
    }
    return hashColor(label);
  }
  /** smallest i with runs[i] ending after g */
  function runAfter(runs: readonly Run[], g: number): number {
    let lo = 0;
    let hi = runs.length;
    while (lo < hi) {
      const m = (lo + hi) >> 1;
      if (runs[m]![1] > g) hi = m;
      else lo = m + 1;
    }
    return lo;
  }
  function runAt(runs: readonly Run[] | undefined, g: number): Run | null {
    if (!runs) return null;
    const i = runAfter(runs, g);
    const r = runs[i];
    return r && r[0] <= g ? r : null;
  }
  const describe = (r: Run, g: number) => (r[3] !== undefined ? `${r[2]} (pfn ${hex(r[3] + (g - r[0]))})` : r[2]);

  /** ranges of [lo, hi) where two run lists differ (label, or frame) */
  function changedRanges(a: readonly Run[] | undefined, b: readonly Run[] | undefined, lo: number, hi: number): [number, number][] {
    const out: [number, number][] = [];
    const A = a ?? [];
    const B = b ?? [];
    let i = runAfter(A, lo);
    let j = runAfter(B, lo);
    let pos = lo;
    const key = (r: Run | undefined, p: number) => (r && r[0] <= p ? `${r[2]}|${r[3] === undefined ? '' : r[3] - r[0] + 0}` : '');
    while (pos < hi) {
      while (i < A.length && A[i]![1] <= pos) i++;
      while (j < B.length && B[j]![1] <= pos) j++;
      const ra = A[i];
      const rb = B[j];
      const na = ra ? (ra[0] > pos ? ra[0] : ra[1]) : hi;
      const nb = rb ? (rb[0] > pos ? rb[0] : rb[1]) : hi;
      const next = Math.min(na, nb, hi);
      if (key(ra, pos) !== key(rb, pos)) {
        const last = out[out.length - 1];
        if (last && last[1] === pos) last[1] = next;
        else out.push([pos, next]);
      }
      pos = next;
    }
    return out;
  }

  /* ---------------------------------------------------------------- selection and the URL fragment */

  const steps = data.steps;
  const schedules: ReportSchedule[] = data.explore?.schedules ?? [];
  const stepPos = (index: number) => Math.max(0, steps.findIndex((s) => s.index === index));

  function currentStates(): { cur: StateSnapshot | null; prev: StateSnapshot | null; label: string } {
    const st = (i: number | null | undefined) => (i === null || i === undefined ? null : (data.states[i] ?? null));
    if (ui.view === 'explore' && schedules.length) {
      const pts = schedules[ui.sched]!.points;
      const p = pts[ui.point];
      const before = ui.point > 0 ? pts[ui.point - 1]!.state : (steps[steps.length - 1]?.state ?? null);
      return { cur: st(p?.state ?? null), prev: st(before), label: p ? `after point ${ui.point} (${p.actor ? `${p.actor}: ` : ''}${p.op}, ${p.phase})` : '' };
    }
    const s = steps[ui.step];
    return { cur: st(s?.state), prev: ui.step > 0 ? st(steps[ui.step - 1]!.state) : null, label: s ? `after step ${s.index} (${s.op})` : '' };
  }

  function writeHash(): void {
    const parts = ui.view === 'explore' ? [`view=explore`, `schedule=${ui.sched}`, `point=${ui.point}`] : [`step=${steps[ui.step]?.index ?? 0}`];
    if (ui.gfn !== null) parts.push(`gfn=${hex(ui.gfn)}`);
    const hash = `#${parts.join('&')}`;
    if (location.hash !== hash) history.replaceState(null, '', hash);
  }

  function readHash(): void {
    const q = new URLSearchParams(location.hash.replace(/^#/, ''));
    if (q.get('view') === 'explore' && schedules.length) {
      ui.view = 'explore';
      ui.sched = Math.min(schedules.length - 1, Math.max(0, Number(q.get('schedule') ?? 0) | 0));
      ui.point = Math.min(schedules[ui.sched]!.points.length - 1, Math.max(0, Number(q.get('point') ?? 0) | 0));
    } else if (q.has('step')) {
      ui.view = 'run';
      ui.step = stepPos(Number(q.get('step')));
    }
    const g = q.get('gfn');
    ui.gfn = g !== null && /^(0x[0-9a-f]+|\d+)$/i.test(g) ? Number(g) : null;
  }

  /* ---------------------------------------------------------------- page skeleton */

  const root = document.getElementById('app')!;
  const tabs = h('nav', { class: 'tabs' });
  const left = h('div', { id: 'left' });
  const right = h('div', { id: 'right' });
  {
    const v = data.vm;
    root.append(
      h(
        'header',
        null,
        h('h1', null, h('span', { class: `badge ${data.pass ? 'pass' : 'fail'}`, id: 'verdict' }, data.pass ? 'PASS' : data.kind === 'diff' ? 'DIFFER' : 'FAIL'), data.title),
        h('div', { class: 'meta' }, `${data.kind === 'diff' ? 'model vs kvm' : data.kind === 'explore' ? 'exploration' : 'run on the model'} · vm ${v.type}, provider ${v.provider}${v.profile ? `, profile ${v.profile}` : ''}${data.file ? ` · ${data.file}` : ''} · ${data.verdict}`),
        data.description ? h('div', { class: 'desc' }, data.description) : null,
        data.notes.length ? h('div', { class: 'notes' }, data.notes.join(' · ')) : null,
      ),
      tabs,
      h('main', null, left, right),
    );
  }

  function renderTabs(): void {
    tabs.replaceChildren();
    const tab = (view: View, text: string) => {
      const b = h('button', { class: ui.view === view ? 'active' : '', 'data-view': view }, text);
      b.onclick = () => {
        ui.view = view;
        render();
      };
      tabs.append(b);
    };
    if (data.kind === 'explore') {
      tab('explore', 'Exploration');
      tab('run', `Setup steps (${steps.length})`);
    } else tab('run', data.kind === 'diff' ? 'Diff: model vs kvm' : 'Run');
    const pr = h('button', null, 'Print');
    pr.onclick = () => window.print();
    tabs.append(pr, h('span', { class: 'hint' }, '↑/↓ or j/k: step · ←/→: point · click a lane: inspect a page · wheel: zoom · drag: pan'));
  }

  /* ---------------------------------------------------------------- run and diff views */

  /** the kernel events of a step or a schedule point, one line each */
  function eventsBlock(events: readonly ReportEvent[]): HTMLElement {
    return h(
      'div',
      { class: 'events' },
      ...(events.length
        ? events.map((e) =>
            h(
              'div',
              null,
              h('span', { class: 'ev' }, e.name),
              ' ',
              Object.entries(e.fields)
                .map(([k, v]) => `${k}=${v}`)
                .join(' '),
            ),
          )
        : [h('div', { class: 'stats' }, '(no kernel events)')]),
    );
  }

  function outcomeBlock(o: ReportOutcome, disagree: boolean): HTMLElement {
    const stats = o.stats && Object.values(o.stats).some((v) => v !== 0)
      ? h(
          'div',
          { class: 'stats' },
          'MMU stats after the step: ',
          ...Object.entries(o.stats)
            .filter(([, v]) => v !== 0)
            .flatMap(([k, v]) => [h('b', null, k), `=${v} `]),
        )
      : null;
    return h(
      'div',
      { class: disagree ? 'disagree' : '' },
      h('div', null, h('b', null, `${o.target}: `), o.outcome),
      o.expected && !o.pass ? h('div', null, `expected: ${o.expected}`) : null,
      o.rule ? h('div', null, `kernel rule: ${o.rule}`) : null,
      o.skipped ? h('div', { class: 'notes' }, `skipped: ${o.skipped}`) : null,
      ...o.mismatches.map((m) => h('div', { class: 'mismatch' }, m)),
      eventsBlock(o.events),
      stats,
    );
  }

  function stepRow(s: ReportStep, i: number): HTMLElement[] {
    const diff = data.kind === 'diff';
    const pass = s.result.pass && (!diff || (s.kvm?.pass ?? true));
    const skipped = s.result.skipped !== undefined;
    const cls = ['step', skipped ? 'skipped' : pass ? 'pass' : 'fail', s.differences ? 'disagree' : '', i === ui.step ? 'selected' : ''].filter(Boolean).join(' ');
    const mark = s.differences ? '≠' : skipped ? '–' : s.result.pass ? '✓' : '✗';
    const row = h(
      'tr',
      { class: cls, 'data-index': s.index, id: `step-${s.index}` },
      h('td', { class: 'mark' }, mark),
      h('td', { class: 'mono' }, String(s.index)),
      h('td', null, h('span', { class: 'op' }, s.op), s.actor ? h('span', { class: 'actor' }, ` [${s.actor}]`) : null, s.args ? h('div', { class: 'args' }, s.args) : null),
      h('td', null, diff ? `model: ${s.result.outcome}` : s.result.outcome, diff && s.kvm ? h('div', { class: s.differences ? 'mismatch' : 'stats' }, `kvm: ${s.kvm.outcome}`) : null),
    );
    row.onclick = () => select(i);
    if (i !== ui.step) return [row];
    const detail = diff
      ? h('div', null, s.differences ? h('div', { class: 'mismatch' }, `model vs kvm: ${s.differences.join('; ')}`) : null, h('div', { class: 'diffcol' }, outcomeBlock(s.result, Boolean(s.differences)), s.kvm ? outcomeBlock(s.kvm, Boolean(s.differences)) : h('div', null, 'kvm: did not run')))
      : outcomeBlock(s.result, false);
    return [row, h('tr', { class: 'detail' }, h('td', { colspan: 4 }, detail))];
  }

  function renderSteps(): void {
    const table = h('table', { class: 'steps' });
    steps.forEach((s, i) => table.append(...stepRow(s, i)));
    left.replaceChildren(table);
    const row = document.getElementById(`step-${steps[ui.step]?.index}`);
    // scroll the step list only (not the page) to keep the selected step in view
    if (row && (row.offsetTop < left.scrollTop || row.offsetTop + row.offsetHeight > left.scrollTop + left.clientHeight)) {
      left.scrollTop = Math.max(0, row.offsetTop - left.clientHeight / 3);
    }
  }

  /* ---------------------------------------------------------------- exploration view */

  const abbrev = (op: string) =>
    op
      .split('_')
      .map((w) => w[0] ?? '')
      .join('');

  function renderExplore(): void {
    const x = data.explore!;
    const sch = schedules[ui.sched]!;
    const sel = h('div', { class: 'schedsel' });
    schedules.forEach((s, i) => {
      const b = h('button', { class: i === ui.sched ? 'active' : '', 'data-schedule': i }, `${s.title} (${s.points.length} phases)`);
      b.onclick = () => {
        ui.sched = i;
        ui.point = initialPoint(i);
        render();
      };
      sel.append(b);
    });
    const scheduled = sch.schedule === '' ? 0 : sch.schedule.split('.').length;
    const table = h('table', null);
    const idx = h('tr', { class: 'idx' }, h('th', null, ''));
    sch.points.forEach((_p, i) => idx.append(h('td', null, String(i))));
    table.append(idx);
    const rows = [...x.actors];
    if (sch.points.some((p) => p.actor === '')) rows.push('');
    for (const actor of rows) {
      const tr = h('tr', { 'data-actor': actor || 'checks' }, h('th', null, actor || 'final checks'));
      sch.points.forEach((p, i) => {
        if (p.actor !== actor) {
          tr.append(h('td', null));
          return;
        }
        const cls = ['pt', i >= scheduled && p.actor !== '' ? 'completion' : '', p.violation ? 'violation' : p.observed.length || p.messages.length ? 'observed' : '', i === ui.point ? 'selected' : ''].filter(Boolean).join(' ');
        const title = `${i}: ${p.actor || 'end of run'} step ${p.step} ${p.op}, phase ${p.phase}${p.outcome ? ` → ${p.outcome}` : ''}${p.messages.length ? `\n${p.messages.join('\n')}` : ''}`;
        const td = h('td', { class: cls, title, 'data-point': i }, h('span', { class: 'box' }, `${abbrev(p.op)}:${p.phase.slice(0, 6)}`));
        td.onclick = () => {
          ui.point = i;
          render();
        };
        tr.append(td);
      });
      table.append(tr);
    }
    const p = sch.points[ui.point];
    const detail = p ? pointDetail(p) : h('div', null, 'no phase');
    left.replaceChildren(
      h(
        'div',
        { style: 'padding:8px' },
        h('div', null, h('b', null, 'search: '), x.summary),
        x.invariants.length ? h('div', null, h('b', null, 'invariants: '), x.invariants.join(', ')) : null,
        Object.keys(x.observations).length
          ? h(
              'div',
              null,
              h('b', null, 'observed: '),
              Object.entries(x.observations)
                .map(([k, n]) => `${k} in ${n} schedules`)
                .join(', '),
            )
          : null,
        sel,
        h('div', { class: 'mono' }, `schedule: ${sch.schedule || '(empty: the deterministic completion alone)'}`),
        sch.note ? h('div', null, sch.note) : null,
        sch.violation ? h('div', { class: 'mismatch', id: 'violation' }, `violation: ${sch.violation}`) : h('div', { class: 'stats' }, 'no violation in this schedule'),
        h('div', { class: 'swim' }, table),
        h('div', { class: 'stats' }, `${scheduled} scheduled phases, then the deterministic completion (grey)`),
        detail,
      ),
    );
    const sel0 = left.querySelector<HTMLElement>('td.pt.selected');
    const swim = left.querySelector<HTMLElement>('.swim');
    if (sel0 && swim && (sel0.offsetLeft < swim.scrollLeft + 80 || sel0.offsetLeft + sel0.offsetWidth > swim.scrollLeft + swim.clientWidth)) {
      swim.scrollLeft = Math.max(0, sel0.offsetLeft - swim.clientWidth / 2);
    }
  }

  function pointDetail(p: SchedulePoint): HTMLElement {
    const cls = p.violation ? 'point-detail violation' : p.messages.length ? 'point-detail observed' : 'point-detail';
    return h(
      'div',
      { class: cls, id: 'point-detail' },
      h('div', null, h('b', null, `point ${ui.point}: `), p.actor ? `${p.actor}, step ${p.step} ${p.op}, phase ${p.phase}` : `${p.op} (${p.phase})`),
      p.outcome ? h('div', null, `step finished: ${p.outcome}`) : null,
      ...p.messages.map((m) => h('div', { class: p.violation ? 'mismatch' : 'notes' }, `${p.violation ? 'violated' : p.observed.length ? `observed (${p.observed.join(', ')})` : 'invariant'}: ${m}`)),
      eventsBlock(p.events),
    );
  }

  function initialPoint(i: number): number {
    const pts = schedules[i]?.points ?? [];
    const v = pts.findIndex((p) => p.violation);
    if (v >= 0) return v;
    const o = pts.findIndex((p) => p.messages.length > 0);
    return o >= 0 ? o : 0;
  }

  /* ---------------------------------------------------------------- the state view */

  /** each drawn lane's zoom actions (for the toolbar's all-lanes buttons) */
  interface LaneZoom {
    changes(): void;
    fit(): void;
  }
  const laneZooms: LaneZoom[] = [];

  function slotKey(s: SnapshotSlot): string {
    return `${s.as_id}:${s.id}`;
  }

  function renderState(): void {
    const { cur, prev, label } = currentStates();
    right.replaceChildren();
    if (!cur) {
      right.append(h('div', { class: 'stats' }, 'no model state at this point (the step did not run on the model)'));
      return;
    }
    const present = LAYERS.filter((l) => cur.slots.some((s) => s.layers[l as keyof SnapshotSlot['layers']] !== undefined));
    const toolbar = h('div', { class: 'toolbar' }, h('b', null, `State ${label}`));
    for (const l of present) {
      const cb = h('input', { type: 'checkbox', 'data-toggle': l, checked: ui.layers.has(l) }) as HTMLInputElement;
      cb.onchange = () => {
        if (cb.checked) ui.layers.add(l);
        else ui.layers.delete(l);
        renderState();
      };
      toolbar.append(h('label', null, cb, ` ${TITLES[l] ?? l}`));
    }
    const all = (text: string, title: string, fn: (z: LaneZoom) => void) => {
      const b = h('button', { title }, text);
      b.onclick = () => {
        for (const z of laneZooms) fn(z);
        renderState();
      };
      return b;
    };
    const chg = h('input', { type: 'checkbox', 'data-toggle': 'changes', checked: ui.changes }) as HTMLInputElement;
    chg.onchange = () => {
      ui.changes = chg.checked;
      renderState();
    };
    toolbar.append(h('label', null, chg, ' highlight changes'));
    toolbar.append(all('all lanes: changes', 'zoom every lane to what changed at this point', (z) => z.changes()), all('all lanes: fit', 'show every slot whole', (z) => z.fit()));
    right.append(toolbar);
    laneZooms.length = 0;
    if (cur.dead) right.append(h('div', { class: 'mismatch' }, 'the VM is dead (bugged or destroyed)'));
    for (const n of cur.notes) right.append(h('div', { class: 'notes' }, n));
    if (cur.slots.length === 0) right.append(h('div', { class: 'stats' }, 'no memslots'));
    right.append(inspector(cur));
    const prevSlots = new Map((prev?.slots ?? []).map((s) => [slotKey(s), s]));
    for (const s of cur.slots) right.append(lane(s, prevSlots.get(slotKey(s)) ?? null, prev !== null));
    const gone = (prev?.slots ?? []).filter((p) => !cur.slots.some((s) => slotKey(s) === slotKey(p)));
    for (const g of gone) right.append(h('div', { class: 'lane chg-gone' }, h('h3', null, `slot ${g.id} (as ${g.as_id}) was deleted at this point`)));
  }

  function inspector(cur: StateSnapshot): HTMLElement {
    const box = h('div', { class: 'inspector', id: 'inspector' });
    const g = ui.gfn;
    if (g === null) {
      box.append(h('span', { class: 'stats' }, 'click a lane to inspect a page'));
      return box;
    }
    box.append(h('div', null, h('b', null, `gfn ${hex(g)}`), ` gpa ${hex(g * 4096)}`));
    const slots = cur.slots.filter((s) => g >= s.base_gfn && g < s.base_gfn + s.npages);
    if (slots.length === 0) box.append(h('div', { class: 'stats' }, 'no memslot holds this gfn'));
    for (const s of slots) {
      const t = h('table', null, h('tr', null, h('td', { colspan: 2 }, h('b', null, `slot ${s.id} (as ${s.as_id})`), ` page ${g - s.base_gfn} of ${s.npages}`)));
      for (const l of LAYERS) {
        const runs = s.layers[l as keyof SnapshotSlot['layers']];
        if (!runs) continue;
        const r = runAt(runs, g);
        t.append(h('tr', { 'data-layer': l }, h('td', null, TITLES[l] ?? l), h('td', null, r ? describe(r, g) : '—')));
      }
      box.append(t);
    }
    return box;
  }

  function lane(s: SnapshotSlot, prev: SnapshotSlot | null, hasPrev: boolean): HTMLElement {
    const key = slotKey(s);
    const lo = s.base_gfn;
    const hi = s.base_gfn + s.npages;
    let vp = ui.zoom.get(key) ?? [lo, hi];
    if (vp[0] < lo || vp[1] > hi || vp[1] - vp[0] < 1) vp = [lo, hi];
    const el = h('section', { class: 'lane', 'data-slot': key });
    const changeRuns: Run[] = [];
    const setView = (a: number, b: number, redraw = true) => {
      const w = Math.min(hi - lo, Math.max(Math.min(MIN_VIEW, hi - lo), Math.round(b - a)));
      let s0 = Math.round(a);
      s0 = Math.max(lo, Math.min(hi - w, s0));
      ui.zoom.set(key, [s0, s0 + w]);
      if (redraw) renderState();
    };
    const toChanges = (redraw: boolean) => {
      if (!changeRuns.length) return;
      const a = changeRuns[0]![0];
      const b = changeRuns[changeRuns.length - 1]![1];
      const pad = Math.max(8, Math.ceil((b - a) / 4));
      setView(a - pad, b + pad, redraw);
    };
    laneZooms.push({ changes: () => toChanges(false), fit: () => setView(lo, hi, false) });
    const zoomBy = (f: number, center?: number) => {
      const c = center ?? (ui.gfn !== null && ui.gfn >= vp[0] && ui.gfn < vp[1] ? ui.gfn : (vp[0] + vp[1]) / 2);
      const w = (vp[1] - vp[0]) * f;
      setView(c - w / 2, c + w / 2);
    };
    const btn = (text: string, title: string, fn: () => void) => {
      const b = h('button', { title }, text);
      b.onclick = fn;
      return b;
    };
    el.append(
      h(
        'h3',
        null,
        `slot ${s.id}`,
        h('span', { class: 'dim' }, `as ${s.as_id} · gfn ${hex(lo)}–${hex(hi)} · ${size(s.npages)} · ${s.flags.join(' ') || 'no flags'}${s.guest_memfd ? ` · ${s.guest_memfd.kind}${s.guest_memfd.fd !== null ? ` fd ${s.guest_memfd.fd}` : ''} offset ${hex(s.guest_memfd.offset)}` : ''}`),
        h(
          'span',
          { class: 'zoom' },
          btn('−', 'zoom out', () => zoomBy(4)),
          btn('+', 'zoom in', () => zoomBy(1 / 4)),
          btn('page', 'zoom to single pages around the inspected gfn', () => zoomBy(64 / (vp[1] - vp[0]))),
          btn('changes', 'zoom to what changed at this point', () => toChanges(true)),
          btn('fit', 'the whole slot', () => setView(lo, hi)),
        ),
      ),
    );
    const span = vp[1] - vp[0];
    const ruler = h('div', { class: 'ruler' }, h('span', { style: 'left:0' }, hex(vp[0])), h('span', { style: 'left:45%' }, `${size(span)} shown`), h('span', { style: 'right:0' }, hex(vp[1])));
    el.append(ruler);
    const rows: { name: string; runs: Run[]; layer: string; changed?: boolean }[] = [];
    const changedLayers: string[] = [];
    if (ui.changes && hasPrev) {
      const all: [number, number][] = [];
      for (const l of LAYERS) {
        if (!ui.layers.has(l)) continue;
        const a = prev?.layers[l as keyof SnapshotSlot['layers']];
        const b = s.layers[l as keyof SnapshotSlot['layers']];
        if (!a && !b) continue;
        const c = prev ? changedRanges(a, b, lo, hi) : [[lo, hi] as [number, number]];
        if (c.length) changedLayers.push(l);
        all.push(...c);
      }
      all.sort((x, y) => x[0] - y[0]);
      for (const [a, b] of all) {
        const last = changeRuns[changeRuns.length - 1];
        if (last && a <= last[1]) last[1] = Math.max(last[1], b);
        else changeRuns.push([a, b, 'changed']);
      }
      rows.push({ name: `changed${prev ? '' : ' (new slot)'}`, runs: changeRuns, layer: 'changes', changed: true });
    }
    for (const l of LAYERS) {
      const runs = s.layers[l as keyof SnapshotSlot['layers']];
      if (!runs || !ui.layers.has(l)) continue;
      rows.push({ name: `${changedLayers.includes(l) ? '• ' : ''}${TITLES[l] ?? l}`, runs, layer: l });
    }
    const rowEls = rows.map((r) => {
      const track = h('div', { class: 'track' });
      const row = h('div', { class: `row${r.changed ? ' changed' : ''}`, 'data-layer': r.layer, 'data-runs': r.runs.length }, h('div', { class: 'name', title: r.name }, r.name), track);
      return { r, row, track };
    });
    for (const x of rowEls) el.append(x.row);
    const legend = h('div', { class: 'legend' });
    el.append(legend);
    // width known once in the document: draw after insertion
    queueMicrotask(() => {
      const width = rowEls[0]?.track.clientWidth || 600;
      const perPage = width / span;
      const labels = new Map<string, string>();
      for (const { r, track } of rowEls) {
        if (perPage >= 6) {
          track.classList.add('grid');
          track.style.setProperty('--page', `${perPage}px`);
          track.style.backgroundPosition = '0 0';
        }
        drawRuns(track, r.runs, r.layer, vp[0], vp[1], width, labels);
        if (ui.gfn !== null && ui.gfn >= vp[0] && ui.gfn < vp[1]) {
          track.append(h('div', { class: 'cursor', style: `left:${(((ui.gfn + 0.5 - vp[0]) / span) * 100).toFixed(4)}%` }));
        }
        attachPointer(track, vp, setView);
      }
      for (const [label, c] of labels) legend.append(h('span', { 'data-label': label }, h('i', { style: `background:${c}` }), label));
    });
    return el;
  }

  function drawRuns(track: HTMLElement, runs: readonly Run[], layer: string, v0: number, v1: number, width: number, labels: Map<string, string>): void {
    const span = v1 - v0;
    const scale = width / span;
    const frag = document.createDocumentFragment();
    const pct = (g: number) => `${(((g - v0) / span) * 100).toFixed(4)}%`;
    let i = runAfter(runs, v0);
    while (i < runs.length && runs[i]![0] < v1) {
      const r = runs[i]!;
      const s = Math.max(r[0], v0);
      const e = Math.min(r[1], v1);
      const px0 = (s - v0) * scale;
      const px1 = (e - v0) * scale;
      if (px1 - px0 >= 1) {
        const c = layer === 'changes' ? '' : color(layer, r[2]);
        if (c) labels.set(r[2], c);
        const d = h('div', {
          class: layer === 'changes' ? 'run chg' : 'run',
          'data-label': r[2],
          'data-start': r[0],
          'data-end': r[1],
          title: `${r[2]}\ngfn ${hex(r[0])}–${hex(r[1] - 1)} (${size(r[1] - r[0])})${r[3] !== undefined ? `\npfn ${hex(r[3])}…` : ''}`,
          style: `left:${pct(s)};width:${(((e - s) / span) * 100).toFixed(4)}%;${c ? `background:${c}` : ''}`,
        });
        if (px1 - px0 > 48) d.append(h('span', { class: 't' }, r[2]));
        frag.append(d);
        i++;
        continue;
      }
      // runs narrower than a pixel: one element for the pixel
      const pxEnd = Math.floor(px0) + 1;
      const gEnd = v0 + pxEnd / scale;
      const j = Math.max(i + 1, runAfter(runs, gEnd));
      const seen = new Set<string>();
      for (let k = i; k < j && seen.size < 3; k++) seen.add(runs[k]![2]);
      const one = seen.size === 1 ? [...seen][0]! : null;
      const c = one !== null && layer !== 'changes' ? color(layer, one) : '';
      if (c && one !== null) labels.set(one, c);
      frag.append(
        h('div', {
          class: `run${one === null ? ' mixed' : ''}${layer === 'changes' ? ' chg' : ''}`,
          'data-label': one ?? 'mixed',
          title: `${j - i} runs in gfn ${hex(runs[i]![0])}–${hex(runs[j - 1]![1] - 1)}: ${[...seen].join(', ')}${seen.size >= 3 ? ', …' : ''}`,
          style: `left:${pct(s)};width:${((1 / width) * 100).toFixed(4)}%;${c ? `background:${c}` : ''}`,
        }),
      );
      i = j;
    }
    track.append(frag);
  }

  function attachPointer(track: HTMLElement, vp: [number, number], setView: (a: number, b: number) => void): void {
    const span = vp[1] - vp[0];
    const gfnAt = (x: number) => vp[0] + Math.floor((x / track.clientWidth) * span);
    let down: { x: number; moved: boolean } | null = null;
    track.onmousedown = (e) => {
      down = { x: e.clientX, moved: false };
      e.preventDefault();
    };
    track.onmousemove = (e) => {
      if (!down || (e.buttons & 1) === 0) return;
      if (Math.abs(e.clientX - down.x) > 3) down.moved = true;
    };
    track.onmouseup = (e) => {
      const d = down;
      down = null;
      if (!d) return;
      const rect = track.getBoundingClientRect();
      if (d.moved) {
        const shift = ((d.x - e.clientX) / rect.width) * span;
        setView(vp[0] + shift, vp[1] + shift);
        return;
      }
      ui.gfn = gfnAt(e.clientX - rect.left);
      writeHash();
      renderState();
    };
    track.onwheel = (e) => {
      e.preventDefault();
      const rect = track.getBoundingClientRect();
      const c = vp[0] + ((e.clientX - rect.left) / rect.width) * span;
      const f = e.deltaY > 0 ? 2 : 0.5;
      setView(c - (c - vp[0]) * f, c + (vp[1] - c) * f);
    };
  }

  /* ---------------------------------------------------------------- rendering and keys */

  function select(i: number): void {
    ui.step = Math.max(0, Math.min(steps.length - 1, i));
    render();
  }

  function render(): void {
    const t0 = performance.now();
    renderTabs();
    if (ui.view === 'explore' && schedules.length) renderExplore();
    else renderSteps();
    renderState();
    writeHash();
    queueMicrotask(() => {
      ui.renders++;
      const w = window as unknown as { __ccmemRenderMs?: number };
      w.__ccmemRenderMs = performance.now() - t0;
      document.body.dataset.rendered = String(ui.renders);
      document.body.dataset.view = ui.view;
      document.body.dataset.step = String(steps[ui.step]?.index ?? '');
      document.body.dataset.point = String(ui.point);
    });
  }

  document.addEventListener('keydown', (e) => {
    if (e.target instanceof HTMLInputElement || e.metaKey || e.ctrlKey || e.altKey) return;
    const next = ['ArrowDown', 'ArrowRight', 'j', 'l'].includes(e.key);
    const prev = ['ArrowUp', 'ArrowLeft', 'k', 'h'].includes(e.key);
    const home = e.key === 'Home';
    const end = e.key === 'End';
    if (!next && !prev && !home && !end) return;
    e.preventDefault();
    if (ui.view === 'explore' && schedules.length) {
      const n = schedules[ui.sched]!.points.length;
      ui.point = home ? 0 : end ? n - 1 : Math.max(0, Math.min(n - 1, ui.point + (next ? 1 : -1)));
      render();
    } else select(home ? 0 : end ? steps.length - 1 : ui.step + (next ? 1 : -1));
  });
  window.addEventListener('hashchange', () => {
    readHash();
    render();
  });

  // the first step that failed (or disagreed), the violation of an exploration, unless the URL says otherwise
  const firstBad = steps.findIndex((s) => !s.result.pass || s.differences !== undefined);
  ui.step = firstBad >= 0 ? firstBad : 0;
  ui.point = initialPoint(0);
  if (location.hash.length > 1) readHash();
  render();
}
