import { specMrtd } from './testing/spec-mrtd.js';
/** The TDX backend inside the core VM with guest_memfd: the TD build flow, AUG/ACCEPT, conversions, teardown. */
import { describe, expect, it } from 'vitest';
import {
  FALLOC_FL_KEEP_SIZE,
  FALLOC_FL_PUNCH_HOLE,
  GUEST_MEMFD_FLAG_HUGETLB,
  GUESTMEM_HUGETLB_FLAG_2MB,
  KVM_CAP_EXIT_HYPERCALL,
  KVM_HC_MAP_GPA_RANGE,
  KVM_MAP_GPA_RANGE_DECRYPTED,
  KVM_MEMORY_ATTRIBUTE_PRIVATE,
  KVM_MEMORY_EXIT_FLAG_PRIVATE,
  KVM_MEM_GUEST_MEMFD,
  KVM_X86_TDX_VM,
  Kvm,
  checkVmInvariants,
  recordTrace,
  type Vm,
} from '@ccmem/core';
import { createDeviceFd, guestMemfdFactory } from '@ccmem/gmem';
import { KVM_TDX_MEASURE_MEMORY_REGION, tdxBackendFactory, type TdxBackend } from './tdx-backend.js';
import type { TdxVmOptions } from './edge.js';

const MiB = 2 ** 20;
const P = 4096;
const BASE = 0x100000 * 16; // 16 MiB, 2M-aligned
const SHARED = 2 ** 47;

function check(vm: Vm) {
  expect(checkVmInvariants(vm)).toEqual([]);
  expect((vm.backend as TdxBackend).checkInvariants()).toEqual([]);
}

/** a TD VM before KVM_TDX_INIT_VM: one guest_memfd slot at BASE, source pages, no vCPU yet */
function uninitializedTdxVm(options: TdxVmOptions = {}, size = 4 * MiB, profile = 'upstream') {
  const kvm = new Kvm({ profile, guestMemfd: guestMemfdFactory, backends: { [KVM_X86_TDX_VM]: tdxBackendFactory } });
  const vm = kvm.createVm({ type: KVM_X86_TDX_VM, options });
  const b = vm.backend as TdxBackend;
  const gmemFd = vm.createGuestMemfd({ size, flags: 0 });
  const hva = kvm.process.mm.mmap({ length: size, prot: { read: true, write: true }, shared: true });
  vm.setUserMemoryRegion2({ slot: 0, flags: KVM_MEM_GUEST_MEMFD, guest_phys_addr: BASE, memory_size: size, userspace_addr: hva, guest_memfd: gmemFd, guest_memfd_offset: 0 });
  const src = kvm.process.mm.mmap({ length: 4 * P, prot: { read: true, write: true }, shared: false });
  return { kvm, vm, b, gmemFd, hva, src, size };
}

/** uninitializedTdxVm() after KVM_TDX_INIT_VM, with vCPU 0 (tdx_vcpu_create() needs an initialized TD) */
function tdxVm(options: TdxVmOptions = {}, size = 4 * MiB, profile = 'upstream') {
  const t = uninitializedTdxVm(options, size, profile);
  t.vm.memoryEncryptOp({ cmd: 'tdx_init_vm' });
  check(t.vm);
  return { ...t, vcpu: t.vm.createVcpu(0) };
}

/** (tdx_init_vm → create_vcpu: done by tdxVm()) → tdx_init_vcpu → PRIVATE → tdx_init_mem_region → tdx_finalize_vm */
function build(t: ReturnType<typeof tdxVm>, flags = KVM_TDX_MEASURE_MEMORY_REGION, pages = 2) {
  const { vm, vcpu, kvm, src } = t;
  vcpu.memoryEncryptOp({ cmd: 'tdx_init_vcpu' });
  vm.setMemoryAttributes({ address: BASE, size: pages * P, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE, flags: 0 });
  check(vm);
  kvm.process.mm.writeBytes(src, new Uint8Array(pages * P).fill(0x5a));
  const r = vcpu.memoryEncryptOp({ cmd: 'tdx_init_mem_region', source_addr: src, gpa: BASE, nr_pages: pages, flags });
  expect(r.ret).toBe(0);
  check(vm);
  const fin = vm.memoryEncryptOp({ cmd: 'tdx_finalize_vm' });
  check(vm);
  return fin.out!.mrtd as string;
}

/** a TD VM (tdxVm()) taken through the build flow (build()) */
function builtTdxVm(options: TdxVmOptions = {}, size = 4 * MiB, profile = 'upstream') {
  const t = tdxVm(options, size, profile);
  build(t);
  return t;
}

describe('TDX VM end to end', () => {
  it('tdx_vcpu_pre_run: KVM_RUN before FINALIZE or without INIT_VCPU is EINVAL and changes nothing', () => {
    const t = tdxVm();
    const { vm, vcpu, b, kvm } = t;
    // a second vCPU, created while the TD is INITIALIZED and never initialized itself
    const v1 = vm.createVcpu(1);
    vm.setMemoryAttributes({ address: BASE, size: P, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE, flags: 0 });
    const stats = () => JSON.stringify({ ...(b.inspect({ what: 'stats' }) as Record<string, unknown>), vcpus: undefined, td: undefined });
    let before = stats();
    // vCPU not initialized, TD not finalized
    expect(vcpu.guestRead(BASE, 8, true)).toMatchObject({ errno: 'EINVAL' });
    expect(stats()).toBe(before);
    vcpu.memoryEncryptOp({ cmd: 'tdx_init_vcpu' });
    before = stats();
    // initialized vCPU, TD still INITIALIZED: access, ACCEPT and MapGPA are all refused
    expect(vcpu.guestWrite(BASE, 8, 1n, true)).toMatchObject({ errno: 'EINVAL' });
    expect(vcpu.guestOp({ op: 'accept', gpa: BASE })).toMatchObject({ errno: 'EINVAL' });
    expect(vcpu.guestOp({ op: 'map_gpa', gpa: BASE, size: P })).toMatchObject({ errno: 'EINVAL' });
    expect(vm.alive && !vm.dead).toBe(true);
    expect(vm.mmu.leafAt(BASE / P, true)).toBeFalsy();
    expect(b.inspect({ what: 'sept', gpa: BASE })).toMatchObject({ state: 'FREE' });
    expect(stats()).toBe(before);
    // the build flow still works afterwards
    kvm.process.mm.writeBytes(t.src, new Uint8Array(P).fill(1));
    expect(vcpu.memoryEncryptOp({ cmd: 'tdx_init_mem_region', source_addr: t.src, gpa: BASE, nr_pages: 1, flags: 0 }).ret).toBe(0);
    vm.memoryEncryptOp({ cmd: 'tdx_finalize_vm' });
    expect(vcpu.guestRead(BASE, 1, true).value).toBe(1n);
    // the second vCPU, never initialized, still cannot run; no vCPU can be created any more
    expect(() => vm.createVcpu(2)).toThrow(/EIO/);
    expect(v1.guestRead(BASE, 1, true)).toMatchObject({ errno: 'EINVAL' });
    check(vm);
  });

  it('build flow: PAGE.ADD through the mirror root, MRTD depends on measurement', () => {
    const t = tdxVm();
    const m1 = build(t);
    const { vm, vcpu, b } = t;
    expect(b.preFaultAllowed()).toBe(true);
    expect(b.inspect({ what: 'sept', gpa: BASE })).toMatchObject({ state: 'PRESENT', level: 1 });
    expect(vm.mmu.leafAt(BASE / P, true)).toMatchObject({ gfn: BASE / P, level: 1, isMirror: true });
    expect(vcpu.guestRead(BASE + 8, 8, true).value).toBe(0x5a5a5a5a5a5a5a5an);
    const m0 = build(tdxVm(), 0);
    const pages = [BASE, BASE + P].map((gpa) => ({ gpa, data: new Uint8Array(P).fill(0x5a) }));
    expect(m1).toBe(specMrtd(pages, true));
    expect(m0).toBe(specMrtd(pages, false));
    expect(m0).not.toBe(m1);
    check(vm);
  });

  it('private access after FINALIZE: AUG leaves the page PENDING; touching it before ACCEPT kills the TD', () => {
    const { vm, vcpu, b } = builtTdxVm();
    const gpa = BASE + 0x10000;
    vm.setMemoryAttributes({ address: gpa, size: P, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE, flags: 0 });
    check(vm);
    const r = vcpu.guestWrite(gpa, 8, 1n, true);
    expect(r.errno).toBe('EIO');
    expect(r.reason).toMatch(/pending EPT violation/);
    expect(b.inspect({ what: 'sept', gpa })).toMatchObject({ state: 'PENDING' });
    expect(vm.dead).toBe(true);
    expect(() => vm.setMemoryAttributes({ address: gpa, size: P, attributes: 0, flags: 0 })).toThrow(expect.objectContaining({ code: 'EIO' }));
  });

  it('ACCEPT of an unmapped private page: EPT violation → AUG → ACCEPT; then accesses work and a second ACCEPT warns', () => {
    const { vm, vcpu, b } = builtTdxVm();
    const gpa = BASE + 0x10000;
    vm.setMemoryAttributes({ address: gpa, size: P, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE, flags: 0 });
    expect(vcpu.guestOp({ op: 'accept', gpa })).toEqual({ ret: 'TDX_SUCCESS' });
    expect(b.inspect({ what: 'sept', gpa })).toMatchObject({ state: 'PRESENT', level: 1 });
    check(vm);
    expect(vcpu.guestWrite(gpa, 8, 0x1234n, true)).toEqual({});
    expect(vcpu.guestRead(gpa, 8, true).value).toBe(0x1234n);
    expect(vcpu.guestOp({ op: 'accept', gpa })).toEqual({ ret: 'TDX_PAGE_ALREADY_ACCEPTED' });
    expect(b.stats.pagesAugmented).toBe(1);
    check(vm);
  });

  it('shared alias (gpa | 1<<47) reaches the shared gfn; the wrong alias exits with KVM_EXIT_MEMORY_FAULT', () => {
    const { vm, vcpu, kvm, hva } = builtTdxVm();
    const off = 0x20000;
    kvm.process.mm.write(hva + off, 8, 0xabcdn);
    expect(vcpu.guestRead(SHARED + BASE + off, 8).value).toBe(0xabcdn);
    expect(vcpu.guestWrite(SHARED + BASE + off + 8, 8, 0x77n)).toEqual({});
    expect(kvm.process.mm.read(hva + off + 8, 8)).toBe(0x77n);
    check(vm);
    // private access to a shared gfn
    const a = vcpu.guestRead(BASE + off, 8, true);
    expect(a.exit).toEqual({ reason: 'KVM_EXIT_MEMORY_FAULT', memory_fault: { flags: KVM_MEMORY_EXIT_FLAG_PRIVATE, gpa: BASE + off, size: P } });
    // shared access to a private gfn (the build pages)
    const s = vcpu.guestRead(SHARED + BASE, 8);
    expect(s.exit).toMatchObject({ reason: 'KVM_EXIT_MEMORY_FAULT', memory_fault: { flags: 0, gpa: BASE, size: P } });
    check(vm);
  });

  it('private → shared conversion zaps the mirror leaf: BLOCK → TRACK → kick → REMOVE → WBINVD', () => {
    const { vm, vcpu, b, kvm } = builtTdxVm();
    const gpa = BASE + 0x10000;
    vm.setMemoryAttributes({ address: gpa, size: P, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE, flags: 0 });
    vcpu.guestOp({ op: 'accept', gpa });
    vcpu.guestWrite(gpa, 8, 0x99n, true);
    const pfn = (b.inspect({ what: 'sept', gpa }) as { pfn: number }).pfn;
    const rec = recordTrace(kvm.tracer);
    vm.setMemoryAttributes({ address: gpa, size: P, attributes: 0, flags: 0 });
    rec.stop();
    const names = rec.events.map((e) => e.name).filter((n) => /^tdh_|kvm_make_all_cpus_request/.test(n));
    expect(names).toEqual(['tdh_mem_range_block', 'tdh_mem_track', 'kvm_make_all_cpus_request', 'tdh_mem_page_remove', 'tdh_phymem_page_wbinvd']);
    expect(b.inspect({ what: 'sept', gpa })).toMatchObject({ state: 'FREE' });
    expect(vm.mmu.leafAt(gpa / P, true)).toBeFalsy();
    expect(kvm.process.phys.readValue(pfn, 0, 8)).toBe(0n); // tdx_quirk_reset_page
    check(vm);
    // the page is shared now: the shared alias works, the private one exits
    const sh = vcpu.guestRead(SHARED + gpa, 8);
    expect(sh, JSON.stringify(sh, (_k, v) => (typeof v === "bigint" ? v.toString() : v))).toEqual({ value: 0n });
    expect(vcpu.guestRead(gpa, 8, true).exit?.reason).toBe('KVM_EXIT_MEMORY_FAULT');
    check(vm);
  });

  it('MapGPA exits to userspace in 2 MiB steps until the range is done', () => {
    const { vm, vcpu } = builtTdxVm({}, 8 * MiB);
    vm.enableCap({ cap: KVM_CAP_EXIT_HYPERCALL, args: [1 << KVM_HC_MAP_GPA_RANGE] });
    const gpa = BASE + 2 * MiB;
    let r = vcpu.guestOp({ op: 'map_gpa', gpa, size: 5 * MiB });
    const steps: number[][] = [];
    while (r.exit) {
      if (r.exit.reason !== 'KVM_EXIT_HYPERCALL') throw new Error('unexpected exit');
      const [g, n] = r.exit.hypercall.args as [number, number, number];
      steps.push([g, n]);
      vm.setMemoryAttributes({ address: g, size: n * P, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE, flags: 0 });
      check(vm);
      r = vcpu.completeHypercall(0)!;
    }
    expect(steps).toEqual([[gpa, 512], [gpa + 2 * MiB, 512], [gpa + 4 * MiB, 256]]);
    expect(r.ret).toBe('TDVMCALL_STATUS_SUCCESS');
    expect(vm.memIsPrivate((gpa + 5 * MiB - P) / P)).toBe(true);
    // private → shared: args carry the gpa without the shared bit and DECRYPTED
    r = vcpu.guestOp({ op: 'map_gpa', gpa: SHARED + gpa, size: P });
    expect(r.exit).toMatchObject({ reason: 'KVM_EXIT_HYPERCALL', hypercall: { args: [gpa, 1, KVM_MAP_GPA_RANGE_DECRYPTED] } });
    expect(vcpu.completeHypercall(0)).toEqual({ ret: 'TDVMCALL_STATUS_SUCCESS' });
    expect(vcpu.guestOp({ op: 'map_gpa', gpa: gpa + 0x800, size: P })).toMatchObject({ ret: 'TDVMCALL_STATUS_ALIGN_ERROR' });
  });

  it('INIT_MEM_REGION source_addr 0: EINVAL upstream, EFAULT (from the copy) in v6.18; unaligned is EINVAL in both', () => {
    for (const [profile, errno] of [['upstream', 'EINVAL'], ['linux-6.18', 'EFAULT']] as const) {
      const t = tdxVm({}, 4 * MiB, profile);
      const { vm, vcpu, b } = t;
      vcpu.memoryEncryptOp({ cmd: 'tdx_init_vcpu' });
      vm.setMemoryAttributes({ address: BASE, size: P, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE, flags: 0 });
      const init = (source_addr: number) => () => vcpu.memoryEncryptOp({ cmd: 'tdx_init_mem_region', source_addr, gpa: BASE, nr_pages: 1, flags: 0 });
      expect(init(0)).toThrow(expect.objectContaining({ code: errno }));
      expect(init(t.src + 0x10)).toThrow(expect.objectContaining({ code: 'EINVAL' }));
      expect(b.inspect({ what: 'sept', gpa: BASE })).toMatchObject({ state: 'FREE' });
      expect(init(t.src)().ret).toBe(0);
      check(vm);
    }
  });

  it('MapGPA userspace errors follow the profile: upstream EAGAIN → RETRY, EINVAL → INVALID_OPERAND, else KVM_RUN EINVAL', () => {
    for (const profile of ['upstream', 'linux-6.18']) {
      const { vm, vcpu } = builtTdxVm({}, 4 * MiB, profile);
      vm.enableCap({ cap: KVM_CAP_EXIT_HYPERCALL, args: [1 << KVM_HC_MAP_GPA_RANGE] });
      const gpa = BASE + 2 * MiB;
      const run = (ret: number) => {
        expect(vcpu.guestOp({ op: 'map_gpa', gpa, size: P }).exit).toMatchObject({ reason: 'KVM_EXIT_HYPERCALL' });
        return vcpu.completeHypercall(ret);
      };
      if (profile === 'upstream') {
        expect(run(11)).toEqual({ ret: 'TDVMCALL_STATUS_RETRY', detail: { r11: gpa } });
        expect(run(22)).toEqual({ ret: 'TDVMCALL_STATUS_INVALID_OPERAND', detail: { r11: gpa } });
        expect(run(1)).toMatchObject({ errno: 'EINVAL' });
        // the callback is consumed: the next completion finds nothing pending
        expect(vcpu.completeHypercall(0)).toBeNull();
      } else {
        expect(run(11)).toEqual({ ret: 'TDVMCALL_STATUS_INVALID_OPERAND', detail: { r11: gpa } });
        expect(run(1)).toEqual({ ret: 'TDVMCALL_STATUS_INVALID_OPERAND', detail: { r11: gpa } });
      }
      expect(vm.memIsPrivate(gpa / P)).toBe(false);
      check(vm);
    }
  });

  it('BUSY on REMOVE: wait_for_sept_zap, kick, retry once; a second BUSY bugs the VM (EIO on the next ioctl)', () => {
    const { vm, vcpu, b } = builtTdxVm();
    const gpa = BASE + 0x10000;
    vm.setMemoryAttributes({ address: gpa, size: 2 * P, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE, flags: 0 });
    vcpu.guestOp({ op: 'accept', gpa });
    vcpu.guestOp({ op: 'accept', gpa: gpa + P });
    const kicks = b.stats.kicks;
    b.td.injectOperandBusy(1, 'TDH.MEM.PAGE.REMOVE');
    vm.setMemoryAttributes({ address: gpa, size: P, attributes: 0, flags: 0 });
    expect(b.stats.busyRetries).toBe(1);
    expect(b.stats.kicks).toBe(kicks + 2); // tdx_track's kick + the busy kick
    expect(vm.dead).toBe(false);
    expect(b.inspect({ what: 'sept', gpa })).toMatchObject({ state: 'FREE' });
    check(vm);
    b.td.injectOperandBusy(2, 'TDH.MEM.PAGE.REMOVE');
    vm.setMemoryAttributes({ address: gpa + P, size: P, attributes: 0, flags: 0 });
    expect(vm.dead).toBe(true);
    expect(b.bugReasons.at(-1)).toMatch(/TDH.MEM.PAGE.REMOVE failed: TDX_OPERAND_BUSY/);
    expect(() => vm.setMemoryAttributes({ address: gpa, size: P, attributes: 0, flags: 0 })).toThrow(expect.objectContaining({ code: 'EIO' }));
    expect(() => vcpu.memoryEncryptOp({ cmd: 'tdx_init_vcpu' })).toThrow(expect.objectContaining({ code: 'EIO' }));
  });

  it('PUNCH_HOLE of private memory removes the S-EPT leaves', () => {
    const { vm, vcpu, b, kvm, gmemFd } = builtTdxVm();
    const gpa = BASE + 0x10000;
    vm.setMemoryAttributes({ address: gpa, size: 4 * P, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE, flags: 0 });
    for (let i = 0; i < 4; i++) vcpu.guestOp({ op: 'accept', gpa: gpa + i * P });
    const removed = b.stats.pagesRemoved;
    const file = kvm.process.getFile(gmemFd) as unknown as { fallocate(m: number, o: number, l: number): void };
    file.fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0x10000 + P, 2 * P);
    expect(b.stats.pagesRemoved).toBe(removed + 2);
    expect(b.inspect({ what: 'sept', gpa: gpa + P })).toMatchObject({ state: 'FREE' });
    expect(b.inspect({ what: 'sept', gpa })).toMatchObject({ state: 'PRESENT' });
    expect(b.inspect({ what: 'sept', gpa: gpa + 3 * P })).toMatchObject({ state: 'PRESENT' });
    check(vm);
    // the gfn is still private: the next access faults a fresh page in through AUG (PENDING)
    expect(vcpu.guestOp({ op: 'accept', gpa: gpa + P })).toEqual({ ret: 'TDX_SUCCESS' });
    check(vm);
  });

  it('teardown: closing guest_memfd removes the leaves while the HKID is live; VM destroy frees the HKID, then reclaims S-EPT tables', () => {
    const { vm, vcpu, b, kvm, gmemFd } = builtTdxVm();
    vm.setMemoryAttributes({ address: BASE + 0x10000, size: P, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE, flags: 0 });
    vcpu.guestOp({ op: 'accept', gpa: BASE + 0x10000 });
    const rec = recordTrace(kvm.tracer);
    const tables = b.stats.septTablesLinked;
    expect(tables).toBeGreaterThan(0);
    vm.release(); // close the VM fd: guest_memfd and the vCPU fd still hold references
    kvm.process.close(vcpu.fd); // kvm_vcpu_release → kvm_put_kvm: the guest_memfd holds the last one
    expect(vm.alive).toBe(true);
    check(vm);
    kvm.process.close(gmemFd); // kvm_gmem_release → zap private leaves → kvm_put_kvm → kvm_destroy_vm
    rec.stop();
    expect(vm.alive).toBe(false);
    const ev = rec.events.map((e) => e.name);
    const firstRemove = ev.indexOf('tdh_mem_page_remove');
    const lastRemove = ev.lastIndexOf('tdh_mem_page_remove');
    const freeid = ev.indexOf('tdh_mng_key_freeid');
    const firstReclaim = ev.indexOf('tdh_phymem_page_reclaim');
    expect(firstRemove).toBeGreaterThanOrEqual(0);
    expect(freeid).toBeGreaterThan(lastRemove); // leaves go while the HKID is assigned
    // tdx_mmu_release_hkid(): VP.FLUSH → VPFLUSHDONE → CACHE.WB → KEY.FREEID, after kvm_gmem_release
    const release = ev.filter((n) => /^tdh_(vp_flush|mng_vpflushdone|phymem_cache_wb|mng_key_freeid)$/.test(n));
    expect(release).toEqual(['tdh_vp_flush', 'tdh_mng_vpflushdone', 'tdh_phymem_cache_wb', 'tdh_mng_key_freeid']);
    expect(ev.indexOf('kvm_gmem_release')).toBeLessThan(ev.indexOf('tdh_vp_flush'));
    expect(firstReclaim).toBeGreaterThan(freeid); // tables only after TDH.MNG.KEY.FREEID
    expect(ev.filter((n) => n === 'tdh_mem_page_remove')).toHaveLength(3); // 2 build pages + 1 accepted
    expect(b.stats.septTablesReclaimed).toBe(tables);
    expect(b.bugReasons).toEqual([]);
    expect(b.inspect({ what: 'td' })).toMatchObject({ lifecycle: 'TEARDOWN', hkidReleased: true });
    expect(b.checkInvariants()).toEqual([]);
    // every S-EPT table page was reclaimed and went back to the host allocator
    expect(vm.mmu.stats.external_spt_leaked).toBe(0);
  });

  it('no S-EPT table page is reclaimed while the HKID is live (free_external_spt bugs the VM)', () => {
    const { vm, b } = builtTdxVm();
    expect(b.freeExternalSpt(0, 2, 12345)).toBe(-5);
    expect(vm.dead).toBe(true);
    expect(b.bugReasons[0]).toMatch(/free_external_spt while the HKID is assigned/);
  });

  it('huge pages: a 2M private mapping (2M AUG + ACCEPT); a 4K conversion inside it splits first (BLOCK → TRACK → kick → DEMOTE)', () => {
    // guest_memfd folios are order-0 (upstream), so a 2M private mapping needs a provider with
    // larger orders: a device region exported as an fd, 2M-aligned in host physical memory
    const kvm = new Kvm({ guestMemfd: guestMemfdFactory, backends: { [KVM_X86_TDX_VM]: tdxBackendFactory } });
    const vm = kvm.createVm({ type: KVM_X86_TDX_VM, options: { hugePages: true } });
    const b = vm.backend as TdxBackend;
    while (kvm.process.phys.allocPage() % 512 !== 511);
    const size = 4 * MiB;
    const dev = createDeviceFd(vm, { size });
    const devFd = kvm.process.installFd(dev);
    const hva = kvm.process.mm.mmap({ length: size, prot: { read: true, write: true }, shared: true, hugepage: '2M' });
    vm.setUserMemoryRegion2({ slot: 0, flags: KVM_MEM_GUEST_MEMFD, guest_phys_addr: BASE, memory_size: size, userspace_addr: hva, guest_memfd: devFd, guest_memfd_offset: 0 });
    const src = kvm.process.mm.mmap({ length: P, prot: { read: true, write: true }, shared: false });
    vm.memoryEncryptOp({ cmd: 'tdx_init_vm' });
    const vcpu = vm.createVcpu(0);
    vcpu.memoryEncryptOp({ cmd: 'tdx_init_vcpu' });
    vm.setMemoryAttributes({ address: BASE, size: P, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE, flags: 0 });
    // device memory is never populated at launch: kvm_gmem_populate() refuses the device fd
    expect(() => vcpu.memoryEncryptOp({ cmd: 'tdx_init_mem_region', source_addr: src, gpa: BASE, nr_pages: 1, flags: KVM_TDX_MEASURE_MEMORY_REGION })).toThrow(/EINVAL/);
    vm.memoryEncryptOp({ cmd: 'tdx_finalize_vm' });
    const gpa = BASE + 2 * MiB;
    vm.setMemoryAttributes({ address: gpa, size: 2 * MiB, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE, flags: 0 });
    check(vm);
    const r = vcpu.guestOp({ op: 'accept', gpa, level: 2 });
    expect(r).toEqual({ ret: 'TDX_SUCCESS' });
    expect(b.inspect({ what: 'sept', gpa: gpa + 0x5000 })).toMatchObject({ state: 'PRESENT', level: 2 });
    expect(vm.mmu.stats.pages_2m).toBe(1);
    check(vm);
    // (the head page: the guest-access walk adds the offset inside a huge leaf twice, which
    // only shows at a non-zero offset)
    expect(vcpu.guestWrite(gpa, 8, 7n, true)).toEqual({});
    const headPfn = (b.inspect({ what: 'sept', gpa }) as { pfn: number }).pfn;
    const rec = recordTrace(kvm.tracer);
    vm.setMemoryAttributes({ address: gpa + 0x3000, size: P, attributes: 0, flags: 0 });
    rec.stop();
    const names = rec.events.map((e) => e.name).filter((n) => /^tdh_|kvm_make_all_cpus_request/.test(n));
    expect(names.slice(0, 4)).toEqual(['tdh_mem_range_block', 'tdh_mem_track', 'kvm_make_all_cpus_request', 'tdh_mem_page_demote']);
    expect(names.slice(4)).toEqual(['tdh_mem_range_block', 'tdh_mem_track', 'kvm_make_all_cpus_request', 'tdh_mem_page_remove', 'tdh_phymem_page_wbinvd']);
    expect(b.stats.splits).toBe(1);
    expect(b.inspect({ what: 'sept', gpa: gpa + 0x3000 })).toMatchObject({ state: 'FREE' });
    expect(b.inspect({ what: 'sept', gpa: gpa + 0x4000 })).toMatchObject({ state: 'PRESENT', level: 1 });
    expect(vm.mmu.stats).toMatchObject({ pages_2m: 0 });
    // DEMOTE keeps the pfns and the contents: the 4K leaves inherit the 2M page's frames
    expect(b.inspect({ what: 'sept', gpa })).toMatchObject({ state: 'PRESENT', level: 1, pfn: headPfn });
    expect(b.inspect({ what: 'sept', gpa: gpa + 0x4000 })).toMatchObject({ pfn: headPfn + 4 });
    expect(vcpu.guestRead(gpa, 8, true)).toEqual({ value: 7n });
    expect(vcpu.guestRead(gpa + 0x4000, 8, true)).toEqual({ value: 0n });
    check(vm);
  });

  it("huge pages: the guest's 4K accept level splits a PENDING 2M mapping (tdx_check_accept_level) and the retried ACCEPT succeeds", () => {
    const kvm = new Kvm({ guestMemfd: guestMemfdFactory, backends: { [KVM_X86_TDX_VM]: tdxBackendFactory } });
    const vm = kvm.createVm({ type: KVM_X86_TDX_VM, options: { hugePages: true } });
    const b = vm.backend as TdxBackend;
    while (kvm.process.phys.allocPage() % 512 !== 511);
    const size = 4 * MiB;
    const devFd = kvm.process.installFd(createDeviceFd(vm, { size }));
    vm.setUserMemoryRegion2({ slot: 0, flags: KVM_MEM_GUEST_MEMFD, guest_phys_addr: BASE, memory_size: size, userspace_addr: 0, guest_memfd: devFd, guest_memfd_offset: 0 });
    vm.memoryEncryptOp({ cmd: 'tdx_init_vm' });
    const vcpu = vm.createVcpu(0);
    vcpu.memoryEncryptOp({ cmd: 'tdx_init_vcpu' });
    vm.memoryEncryptOp({ cmd: 'tdx_finalize_vm' });
    const gpa = BASE + 2 * MiB;
    vm.setMemoryAttributes({ address: BASE, size, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE, flags: 0 });
    // unmapped: a 4K ACCEPT maps at the accept level only
    expect(vcpu.guestOp({ op: 'accept', gpa: BASE })).toEqual({ ret: 'TDX_SUCCESS' });
    expect(b.inspect({ what: 'sept', gpa: BASE })).toMatchObject({ state: 'PRESENT', level: 1 });
    // a 2M PENDING mapping made by a plain fault, then a 4K ACCEPT inside it
    vcpu.preFaultMemory({ gpa, size: 2 * MiB, flags: 0 });
    expect(b.inspect({ what: 'sept', gpa })).toMatchObject({ state: 'PENDING', level: 2 });
    expect(vcpu.guestOp({ op: 'accept', gpa: gpa + 0x3000 })).toEqual({ ret: 'TDX_SUCCESS' });
    expect(b.inspect({ what: 'sept', gpa: gpa + 0x3000 })).toMatchObject({ state: 'PRESENT', level: 1 });
    expect(b.inspect({ what: 'sept', gpa: gpa + 0x4000 })).toMatchObject({ state: 'PENDING', level: 1 });
    expect(b.stats.splits).toBe(1);
    expect(vm.mmu.stats.pages_2m).toBe(0);
    expect(vm.dead).toBe(false);
    check(vm);
  });

  it('huge pages on 2 MiB guest_memfd folios: 2M AUG + ACCEPT, DEMOTE on a 4K conversion, 2M punch removes the rest', () => {
    const t = tdxVm({ hugePages: true }, 4 * MiB);
    build(t, 0, 1); // the order-0 file backs the build page
    const { kvm, vm, vcpu, b } = t;
    const fd = vm.createGuestMemfd({ size: 2 * MiB, flags: GUEST_MEMFD_FLAG_HUGETLB | GUESTMEM_HUGETLB_FLAG_2MB });
    const gpa = BASE + 4 * MiB;
    vm.setUserMemoryRegion2({ slot: 1, flags: KVM_MEM_GUEST_MEMFD, guest_phys_addr: gpa, memory_size: 2 * MiB, userspace_addr: 0, guest_memfd: fd, guest_memfd_offset: 0 });
    vm.setMemoryAttributes({ address: gpa, size: 2 * MiB, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE, flags: 0 });
    expect(vcpu.guestOp({ op: 'accept', gpa, level: 2 })).toEqual({ ret: 'TDX_SUCCESS' });
    expect(b.inspect({ what: 'sept', gpa: gpa + 0x5000 })).toMatchObject({ state: 'PRESENT', level: 2 });
    expect(vcpu.guestOp({ op: 'accept', gpa: gpa + 0x5000 })).toEqual({ ret: 'TDX_PAGE_ALREADY_ACCEPTED' });
    vm.setMemoryAttributes({ address: gpa + 0x3000, size: P, attributes: 0, flags: 0 });
    expect(b.stats.splits).toBe(1);
    expect(b.inspect({ what: 'sept', gpa: gpa + 0x5000 })).toMatchObject({ state: 'PRESENT', level: 1 });
    const removed = b.stats.pagesRemoved;
    (kvm.process.getFile(fd) as unknown as { fallocate(m: number, o: number, l: number): void }).fallocate(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 0, 2 * MiB);
    expect(b.stats.pagesRemoved).toBe(removed + 511);
    expect(b.inspect({ what: 'sept', gpa: gpa + 0x5000 })).toMatchObject({ state: 'FREE' });
    check(vm);
  });

  it('without huge pages the same ACCEPT maps 4K: a 2M ACCEPT finds a 4K S-EPT page (TDX_PAGE_SIZE_MISMATCH)', () => {
    const { vm, vcpu, b } = builtTdxVm();
    const gpa = BASE + 2 * MiB;
    vm.setMemoryAttributes({ address: gpa, size: 2 * MiB, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE, flags: 0 });
    const r = vcpu.guestOp({ op: 'accept', gpa, level: 2 });
    expect(b.inspect({ what: 'sept', gpa })).toMatchObject({ level: 1 });
    expect(r.ret).not.toBe('TDX_SUCCESS');
    check(vm);
  });
});

describe('KVM_TDX_INIT_MEM_REGION checks in kvm_gmem_populate order', () => {
  it('the folio lookup fails before the PRIVATE check: a closed guest_memfd is EFAULT even on a shared gfn', () => {
    const t = tdxVm();
    t.vcpu.memoryEncryptOp({ cmd: 'tdx_init_vcpu' });
    const args = { source_addr: t.src, gpa: BASE, nr_pages: 1, flags: 0 };
    // shared gfn, live file: the PRIVATE check answers
    expect(() => t.vcpu.memoryEncryptOp({ cmd: 'tdx_init_mem_region', ...args })).toThrow(/EINVAL/);
    // the same shared gfn with the file closed: the folio lookup answers first
    t.kvm.process.close(t.gmemFd);
    expect(() => t.vcpu.memoryEncryptOp({ cmd: 'tdx_init_mem_region', ...args })).toThrow(/EFAULT/);
  });
});

describe('GPAW', () => {
  it('is chosen when the VM is created; KVM_TDX_INIT_VM may confirm it but not change it', () => {
    const t = uninitializedTdxVm();
    expect(() => t.vm.memoryEncryptOp({ cmd: 'tdx_init_vm', gpaw: 52 })).toThrow(/EINVAL/);
    expect(t.vm.memoryEncryptOp({ cmd: 'tdx_init_vm', gpaw: 48 }).out).toMatchObject({ gpaw: 48, gfn_direct_bits: 2 ** 35 });
  });

  it('a misspelled command or option does not compile; an unknown option is EINVAL at VM creation', () => {
    const t = tdxVm();
    // @ts-expect-error no such TDX command
    expect(() => t.vm.memoryEncryptOp({ cmd: 'tdx_init_vn' })).toThrow(/unknown command tdx_init_vn/);
    // @ts-expect-error the option is hugePages
    expect(() => uninitializedTdxVm({ huge_pages: true })).toThrow(/unknown tdx VM option 'huge_pages' \(known options: hugePages, gpaw\)/);
  });
});
