/**
 * TDX benches on the module + backend layers: the mirror-root hooks are called directly, the way
 * the TDP MMU calls them, against a VM that only counts kicks.
 *
 *  - tdx.aug_accept_4k: after FINALIZE, map (SEPT.ADD as needed, PAGE.AUG) and accept
 *    (TDG.MEM.PAGE.ACCEPT) every 4 KiB page of 1 GiB of private memory.
 *  - tdx.remove_4k: convert the same 1 GiB back to shared: per page BLOCK → TRACK → kick →
 *    REMOVE → WBINVD.
 */
import type { MemslotView, VmForBackend } from '@ccmem/core';
import type { BenchCase } from '../../../bench/types.js';
import { createTdxBackend, type TdxBackend } from '../src/tdx-backend.js';
import { createFakeHostPhysMem } from '../src/testing.js';

const PAGES = (1024 * 1024 * 1024) / 4096; // 1 GiB

function createBenchVm(): VmForBackend & { kicks: number; bugged: string | null } {
  // like the core's Tracer: `enabled` false means nobody listens, so no event is built
  const tracer = { enabled: false, emit() {} };
  return {
    vmType: 5,
    tracer,
    nrVcpus: 1,
    kicks: 0,
    bugged: null,
    memIsPrivate: () => true,
    gfnToMemslot: () => null as MemslotView | null,
    zapGfnRange() {},
    readPfn: () => new Uint8Array(0),
    writePfn() {},
    copyFromUser: () => null,
    copyToUser: () => false,
    markBugged(reason: string) {
      this.bugged = reason;
    },
    kickAllVcpus() {
      this.kicks++;
      return 1;
    },
    mapPrivatePfn: () => -5,
    gmemGetPfn: () => ({ errno: -14 }),
  };
}

interface Setup {
  backend: TdxBackend;
  vm: ReturnType<typeof createBenchVm>;
  pfns: Float64Array;
  spts: Float64Array;
}

function setup(): Setup {
  const phys = createFakeHostPhysMem();
  const backend = createTdxBackend({ phys });
  const vm = createBenchVm();
  backend.attach(vm);
  backend.vmIoctl('tdx_init_vm', {});
  backend.vcpuIoctl(0, 'tdx_init_vcpu', {});
  backend.vmIoctl('tdx_finalize_vm', {});
  const pfns = new Float64Array(PAGES);
  for (let i = 0; i < PAGES; i++) pfns[i] = phys.allocPage();
  const spts = new Float64Array(PAGES / 512 + 2);
  for (let i = 0; i < spts.length; i++) spts[i] = phys.allocPage();
  return { backend, vm, pfns, spts };
}

/** What the TDP MMU does on each private fault of the range, then the guest's ACCEPT. */
function augAccept(s: Setup): void {
  const { backend, pfns, spts } = s;
  // PML4 entry → PDPT, PDPT entry → PD (one each for 1 GiB at gpa 0)
  if (backend.linkExternalSpt(0, 4, spts[spts.length - 1]!) !== 0) throw new Error('SEPT.ADD level 4 failed');
  if (backend.linkExternalSpt(0, 3, spts[spts.length - 2]!) !== 0) throw new Error('SEPT.ADD level 3 failed');
  const req = { op: 'accept', args: { gpa: 0 } };
  for (let gfn = 0; gfn < PAGES; gfn++) {
    if (gfn % 512 === 0 && backend.linkExternalSpt(gfn, 2, spts[gfn / 512]!) !== 0) throw new Error('SEPT.ADD failed');
    if (backend.setExternalSpte(gfn, 1, pfns[gfn]!) !== 0) throw new Error('PAGE.AUG failed');
    req.args.gpa = gfn * 4096;
    if (backend.guestOp(0, req).ret !== 'TDX_SUCCESS') throw new Error('ACCEPT failed');
  }
}

function remove(s: Setup): void {
  const { backend, pfns, vm } = s;
  for (let gfn = 0; gfn < PAGES; gfn++) backend.removeExternalSpte(gfn, 1, pfns[gfn]!);
  if (vm.bugged) throw new Error(vm.bugged);
}

/** best of `rounds` fresh runs (the first one also warms up the JIT) */
function best(rounds: number, once: () => number): number {
  let v = 0;
  for (let i = 0; i < rounds; i++) v = Math.max(v, once());
  return v;
}

export const benches: BenchCase[] = [
  {
    name: 'tdx.aug_accept_4k',
    unit: 'pages/s',
    target: { op: '>=', value: 1_000_000 },
    run() {
      return best(3, () => {
        const s = setup();
        const t0 = performance.now();
        augAccept(s);
        const dt = (performance.now() - t0) / 1000;
        if (s.backend.stats.pagesAccepted !== PAGES) throw new Error('not every page was accepted');
        return PAGES / dt;
      });
    },
  },
  {
    name: 'tdx.remove_4k',
    unit: 'pages/s',
    target: { op: '>=', value: 1_000_000 },
    run() {
      return best(3, () => {
        const s = setup();
        augAccept(s);
        const t0 = performance.now();
        remove(s);
        const dt = (performance.now() - t0) / 1000;
        if (s.backend.stats.pagesRemoved !== PAGES || s.backend.checkInvariants().length !== 0) throw new Error('removal incomplete');
        return PAGES / dt;
      });
    },
  },
];
