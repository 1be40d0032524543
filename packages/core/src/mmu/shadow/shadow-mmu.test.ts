import { describe, expect, it } from 'vitest';
import { Kvm } from '../../kvm.js';
import { assertVmInvariants, checkVmInvariants } from '../../invariants.js';
import { KVM_CAP_VM_TYPES, KVM_MEM_LOG_DIRTY_PAGES, KVM_X86_DEFAULT_VM, KVM_X86_SNP_VM, KVM_X86_SW_PROTECTED_VM, KVM_X86_TDX_VM } from '../../uapi.js';
import { KvmError } from '../../errno.js';
import { GuestPageTableBuilder } from '../guest-pt-builder.js';
import { EFER_LMA, EFER_LME, EFER_NX, PFERR_PRESENT_MASK, PFERR_USER_MASK, PFERR_WRITE_MASK, X86_CR0_PE, X86_CR0_PG, X86_CR0_WP, X86_CR4_PAE } from '../guest-paging.js';
import { ACC_EXEC_MASK, ACC_USER_MASK, ACC_WRITE_MASK } from '../mmu-internal.js';
import { roleAccess, roleDirect, roleLevel } from './mmu-page.js';
import { PT_WRITABLE_LO } from '../spte.js';
import { KVM_MMU_HASH_SHIFT, kvmPageTableHashfn } from './shadow-mmu.js';

const MiB = 1 << 20;
const SIZE = 64 * MiB;
const LONG_MODE = { cr0: X86_CR0_PE | X86_CR0_PG | X86_CR0_WP, cr4: X86_CR4_PAE, efer: EFER_LME | EFER_LMA | EFER_NX };

function shadowVm(paging = true) {
  const kvm = new Kvm({ profile: 'upstream-shadow' });
  const vm = kvm.createVm();
  const hva = kvm.process.mm.mmap({ length: SIZE, prot: { read: true, write: true }, shared: false });
  vm.setUserMemoryRegion2({ slot: 0, flags: 0, guest_phys_addr: 0, memory_size: SIZE, userspace_addr: hva });
  const vcpu = vm.createVcpu(0);
  let next = 0x100000;
  const b = new GuestPageTableBuilder(vm.guestMemory, () => {
    const p = next;
    next += 4096;
    return p;
  });
  if (paging) {
    vcpu.paging.setRegs(LONG_MODE);
    vcpu.paging.setCr3(b.root);
  }
  return { kvm, vm, vcpu, hva, b, mmu: () => vm.shadowMmu };
}

/** the leaf SPTEs that map `gfn` */
function leavesOf(vm: ReturnType<typeof shadowVm>['vm'], gfn: number) {
  const out: { sp: number; level: number; access: number; writable: boolean }[] = [];
  vm.shadowMmu.forEachLeaf((_sptep, sp, level, g, access, lo) => {
    if (g <= gfn && gfn < g + 2 ** (9 * (level - 1))) out.push({ sp, level, access, writable: (lo & PT_WRITABLE_LO) !== 0 });
  });
  return out;
}

describe('the shadow MMU is chosen by the profile', () => {
  it('tdp_enabled = false offers only the default VM type; SW_PROTECTED (and SNP, TDX) need TDP', () => {
    const kvm = new Kvm({ profile: 'upstream-shadow' });
    expect(kvm.checkExtension(KVM_CAP_VM_TYPES)).toBe(1 << KVM_X86_DEFAULT_VM);
    expect(() => kvm.createVm({ type: KVM_X86_SW_PROTECTED_VM })).toThrow(KvmError);
    const vm = kvm.createVm();
    expect(vm.tdpEnabled).toBe(false);
  });

  it('SNP and TDX are not offered without the TDP MMU even with a backend registered', () => {
    const refuse = () => {
      throw new Error('not created');
    };
    const kvm = new Kvm({ profile: 'upstream-shadow', backends: { [KVM_X86_SNP_VM]: refuse, [KVM_X86_TDX_VM]: refuse } });
    expect(kvm.vmTypes).toBe(1 << KVM_X86_DEFAULT_VM);
    expect(() => kvm.createVm({ type: KVM_X86_SNP_VM })).toThrow(KvmError);
    const tdp = new Kvm({ backends: { [KVM_X86_SNP_VM]: refuse } });
    expect(tdp.vmTypes & (1 << KVM_X86_SNP_VM)).not.toBe(0);
  });

  it('paging off: gpa accesses go through a direct shadow root (nonpaging MMU)', () => {
    const { vm, vcpu, kvm, hva } = shadowVm(false);
    expect(vcpu.guestWrite(0x2000010, 8, 0x1122334455667788n)).toEqual({});
    expect(kvm.process.mm.read(hva + 0x2000010, 8)).toBe(0x1122334455667788n);
    expect(vcpu.guestRead(0x2000010, 4)).toEqual({ value: 0x55667788n });
    const leaves = leavesOf(vm, 0x2000);
    expect(leaves).toHaveLength(1);
    expect(roleDirect(vm.shadowMmu.spRole(leaves[0]!.sp))).toBe(true);
    expect(vm.shadowMmu.stats.pages_4k).toBeGreaterThan(0);
    expect(vm.mmu.stats.pages_4k).toBe(0); // the TDP MMU is not used
    // the TDP-only entry points refuse: the resumable TDP access, KVM_PRE_FAULT_MEMORY
    expect(() => vcpu.beginAccess({ gpa: 0x2000000, size: 8, kind: 'read' })).toThrow(KvmError);
    expect(() => vcpu.preFaultMemory({ gpa: 0x2000000, size: 4096 })).toThrow(/EOPNOTSUPP/);
    assertVmInvariants(vm);
  });
});

describe('shadow paging of a 4-level guest', () => {
  it('a gva access walks the guest tables, sets A, and caches (gfn, access) in shadowed_translation', () => {
    const { vm, vcpu, b, kvm, hva } = shadowVm();
    const leaf = b.map(0x400000, 0x2000000, { write: true, dirty: true });
    expect(vcpu.paging.access({ gva: 0x400008, size: 8, kind: 'write', value: 0xabcdn })).toEqual({});
    expect(kvm.process.mm.read(hva + 0x2000008, 8)).toBe(0xabcdn);
    expect(vcpu.paging.access({ gva: 0x400008, size: 8, kind: 'read' })).toEqual({ value: 0xabcdn });
    expect(kvm.process.mm.read(hva + leaf, 8) & 0x20n).toBe(0x20n); // guest A bit
    const [l] = leavesOf(vm, 0x2000);
    expect(l!.level).toBe(1);
    expect(roleDirect(vm.shadowMmu.spRole(l!.sp))).toBe(false);
    expect(l!.access).toBe(ACC_WRITE_MASK | ACC_USER_MASK | ACC_EXEC_MASK);
    expect(vm.shadowMmu.getGfn(l!.sp, 0x400000 / 4096 % 512)).toBe(0x2000);
    expect(vm.shadowMmu.stats.mmu_cache_miss).toBeGreaterThanOrEqual(4); // root + 3 tables
    const stats = vm.mmuStats();
    expect(stats.pages_4k).toBe(vm.shadowMmu.stats.pages_4k);
    expect(stats.mmu_cache_miss).toBe(vm.shadowMmu.stats.mmu_cache_miss);
    expect(stats.remote_tlb_flush).toBeGreaterThanOrEqual(vm.shadowMmu.stats.remote_tlb_flush);
    assertVmInvariants(vm);
  });

  it('a clean gpte is shadowed read-only until the first write sets D (protect_clean_gpte)', () => {
    const { vm, vcpu, b, kvm, hva } = shadowVm();
    const leaf = b.map(0x400000, 0x2000000, { write: true });
    vcpu.paging.access({ gva: 0x400000, size: 8, kind: 'read' });
    expect(leavesOf(vm, 0x2000)[0]!.access & ACC_WRITE_MASK).toBe(0);
    expect(leavesOf(vm, 0x2000)[0]!.writable).toBe(false);
    vcpu.paging.access({ gva: 0x400000, size: 8, kind: 'write', value: 1n });
    expect(kvm.process.mm.read(hva + leaf, 8) & 0x40n).toBe(0x40n); // guest D bit
    expect(leavesOf(vm, 0x2000)[0]!.access & ACC_WRITE_MASK).toBe(ACC_WRITE_MASK); // kvm_mmu_page_set_access
    expect(leavesOf(vm, 0x2000)[0]!.writable).toBe(true);
    assertVmInvariants(vm);
  });

  it('not-present and protection faults are injected as #PF with the error code', () => {
    const { vm, vcpu, b } = shadowVm();
    b.map(0x400000, 0x2000000, { write: false, user: false });
    const np = vcpu.paging.access({ gva: 0x500000, size: 4, kind: 'read' });
    expect(np.exception).toMatchObject({ vector: '#PF', errorCode: 0, address: 0x500000 });
    const prot = vcpu.paging.access({ gva: 0x400000, size: 4, kind: 'write', user: true, value: 1n });
    expect(prot.exception).toMatchObject({ vector: '#PF', errorCode: PFERR_PRESENT_MASK | PFERR_WRITE_MASK | PFERR_USER_MASK });
    expect(vcpu.paging.access({ gva: 0x400000, size: 4, kind: 'read' }).value).toBe(0n);
    assertVmInvariants(vm);
  });

  it('a guest write to a 4K guest page table unsyncs its shadow page; INVLPG syncs the entry', () => {
    const { vm, vcpu, b } = shadowVm();
    b.map(0x400000, 0x2000000, { write: true, dirty: true, accessed: true });
    b.map(0x401000, 0x2001000, { write: true, dirty: true, accessed: true });
    const pteGpa = b.entryGpa(0x400000, 1);
    const ptPage = pteGpa - (pteGpa % 4096);
    b.map(0x800000, ptPage, { write: true, dirty: true, accessed: true }); // the PT page, mapped in the guest
    vcpu.paging.access({ gva: 0x400000, size: 8, kind: 'write', value: 7n });
    vcpu.paging.access({ gva: 0x2001000 - 0x2001000 + 0x401000, size: 8, kind: 'write', value: 8n });
    const mmu = vm.shadowMmu;
    const writesBefore = mmu.stats.mmu_pte_write;
    // the guest remaps 0x400000 to 0x2001000 by writing its PTE through 0x800000
    const newPte = GuestPageTableBuilder.leaf(0x2001000, { write: true, dirty: true, accessed: true }, false);
    const r = vcpu.paging.access({ gva: 0x800000 + (pteGpa % 4096), size: 8, kind: 'write', value: BigInt(newPte.lo >>> 0) | (BigInt(newPte.hi >>> 0) << 32n) });
    expect(r).toEqual({});
    expect(mmu.stats.mmu_unsync).toBe(1); // the 4K page went unsync instead of trapping the write
    expect(mmu.stats.mmu_pte_write).toBe(writesBefore);
    // until the guest flushes, the stale translation may be used (architecturally allowed)
    expect(vcpu.paging.access({ gva: 0x400000, size: 8, kind: 'read' }).value).toBe(7n);
    vcpu.paging.invlpg(0x400000);
    expect(vcpu.paging.access({ gva: 0x400000, size: 8, kind: 'read' }).value).toBe(8n);
    expect(mmu.getGfn(leavesOf(vm, 0x2001)[0]!.sp, 0)).toBe(0x2001);
    // a CR3 load syncs and write-protects the unsync page again
    const events: string[] = [];
    const off = vm.tracer.on((e) => events.push(e.name));
    vcpu.paging.setCr3(b.root);
    off();
    expect(mmu.stats.mmu_unsync).toBe(0);
    expect(events).toContain('kvm_mmu_sync_page');
    assertVmInvariants(vm);
  });

  it('upper-level guest tables are write-tracked: a guest write is emulated (mmu_pte_write) and floods after 3', () => {
    const { vm, vcpu, b, kvm, hva } = shadowVm();
    b.map(0x40000000, 0x2000000, { write: true, dirty: true, accessed: true }); // in the second GiB
    b.map(0x400000, 0x2001000, { write: true, dirty: true, accessed: true });
    const pdeGpa = b.entryGpa(0x40000000, 2);
    const pdPage = pdeGpa - (pdeGpa % 4096);
    b.map(0x800000, pdPage, { write: true, dirty: true, accessed: true }); // mapped through another PD
    expect(vcpu.paging.access({ gva: 0x40000000, size: 8, kind: 'read' })).toEqual({ value: 0n });
    const mmu = vm.shadowMmu;
    expect(mmu.gfnIsWriteTracked(pdPage / 4096)).toBe(true);
    // an unrelated PDE (index 100) of the write-tracked PD is written three times
    const at = 0x800000 + 100 * 8;
    for (let i = 1; i <= 3; i++) expect(vcpu.paging.access({ gva: at, size: 8, kind: 'write', value: 0n })).toEqual({});
    expect(mmu.stats.mmu_pte_write).toBe(3);
    expect(mmu.stats.mmu_flooded).toBe(1); // the third write zapped the page (detect_write_flooding)
    expect(mmu.gfnIsWriteTracked(pdPage / 4096)).toBe(false);
    // a misaligned 2-byte write zaps at once
    vcpu.paging.access({ gva: 0x40000000, size: 8, kind: 'read' });
    expect(mmu.gfnIsWriteTracked(pdPage / 4096)).toBe(true);
    vcpu.paging.access({ gva: at + 3, size: 2, kind: 'write', value: 0n });
    expect(mmu.stats.mmu_flooded).toBe(2);
    expect(kvm.process.mm.read(hva + pdPage + 100 * 8, 8)).toBe(0n);
    assertVmInvariants(vm);
  });

  it('a write to a write-tracked table through a gva on the same walk clears the flood count', () => {
    const { vm, vcpu, b } = shadowVm();
    b.map(0x400000, 0x2000000, { write: true, dirty: true, accessed: true });
    const pdeGpa = b.entryGpa(0x400000, 2);
    b.map(0x800000, pdeGpa - (pdeGpa % 4096), { write: true, dirty: true, accessed: true });
    vcpu.paging.access({ gva: 0x400000, size: 8, kind: 'read' });
    for (let i = 0; i < 5; i++) vcpu.paging.access({ gva: 0x800000 + 100 * 8, size: 8, kind: 'write', value: 0n });
    // shadow_page_table_clear_flood(): the PD is on the writer's own walk
    expect(vm.shadowMmu.stats.mmu_pte_write).toBe(5);
    expect(vm.shadowMmu.stats.mmu_flooded).toBe(0);
    assertVmInvariants(vm);
  });

  it('a guest 2M page on 4K host memory is shadowed by a direct page whose role.access is the guest access', () => {
    const { vm, vcpu, b } = shadowVm();
    b.map(0x40000000, 0x1000000, { level: 2, write: false, accessed: true });
    expect(vcpu.paging.access({ gva: 0x40000000 + 0x3008, size: 8, kind: 'read' })).toEqual({ value: 0n });
    const [l] = leavesOf(vm, 0x1003);
    expect(l!.level).toBe(1);
    const role = vm.shadowMmu.spRole(l!.sp);
    expect(roleDirect(role)).toBe(true);
    expect(roleLevel(role)).toBe(1);
    expect(roleAccess(role)).toBe(ACC_USER_MASK | ACC_EXEC_MASK);
    expect(vm.shadowMmu.getAccess(l!.sp, 3)).toBe(roleAccess(role));
    expect(vm.shadowMmu.getGfn(l!.sp, 3)).toBe(0x1003);
    expect(vcpu.paging.access({ gva: 0x40000000, size: 8, kind: 'write', value: 1n }).exception?.vector).toBe('#PF');
    assertVmInvariants(vm);
  });

  it('deleting a memslot zaps every page with kvm_mmu_zap_all_fast; the root is reloaded', () => {
    const { vm, vcpu, b } = shadowVm();
    b.map(0x400000, 0x2000000, { write: true, dirty: true });
    vcpu.paging.access({ gva: 0x400000, size: 8, kind: 'read' });
    const mmu = vm.shadowMmu;
    const gen = mmu.mmuValidGen;
    const hva2 = vm.process.mm.mmap({ length: 2 * MiB, prot: { read: true, write: true }, shared: false });
    vm.setUserMemoryRegion2({ slot: 1, flags: 0, guest_phys_addr: 0x10000000, memory_size: 2 * MiB, userspace_addr: hva2 });
    vm.setUserMemoryRegion2({ slot: 1, flags: 0, guest_phys_addr: 0x10000000, memory_size: 0, userspace_addr: hva2 });
    expect(mmu.mmuValidGen).toBe(gen ^ 1);
    expect(mmu.stats.pages_4k).toBe(0);
    expect(mmu.stats.mmu_shadow_zapped).toBeGreaterThanOrEqual(4);
    expect(vcpu.paging.access({ gva: 0x400000, size: 8, kind: 'read' })).toEqual({ value: 0n });
    expect(mmu.stats.pages_4k).toBeGreaterThan(0);
    assertVmInvariants(vm);
  });

  it('dirty logging write-protects through the rmaps; the next write is logged', () => {
    const { vm, vcpu, b, hva } = shadowVm();
    b.map(0x400000, 0x2000000, { write: true, dirty: true });
    vcpu.paging.access({ gva: 0x400000, size: 8, kind: 'write', value: 1n });
    vm.setUserMemoryRegion2({ slot: 0, flags: KVM_MEM_LOG_DIRTY_PAGES, guest_phys_addr: 0, memory_size: SIZE, userspace_addr: hva });
    expect(leavesOf(vm, 0x2000)[0]!.writable).toBe(false);
    vm.getDirtyLog({ slot: 0 });
    vcpu.paging.access({ gva: 0x400000, size: 8, kind: 'write', value: 2n });
    expect(leavesOf(vm, 0x2000)[0]!.writable).toBe(true);
    const bitmap = vm.getDirtyLog({ slot: 0 });
    expect((bitmap[0x2000 >> 3]! >> (0x2000 & 7)) & 1).toBe(1);
    expect(leavesOf(vm, 0x2000)[0]!.writable).toBe(false); // KVM_GET_DIRTY_LOG re-protected it
    assertVmInvariants(vm);
  });

  it('the mmu-notifier zaps the shadow SPTEs of an unmapped hva range', () => {
    const { vm, vcpu, b, hva } = shadowVm();
    b.map(0x400000, 0x2000000, { write: true, dirty: true });
    vcpu.paging.access({ gva: 0x400000, size: 8, kind: 'write', value: 5n });
    vm.process.mm.munmap(hva + 0x2000000, 4096);
    expect(leavesOf(vm, 0x2000)).toHaveLength(0);
    expect(checkVmInvariants(vm)).toEqual([]);
  });
});

describe('a shadow fault as a resumable operation', () => {
  it('a gpte changed between the walk and mmu_lock is caught by FNAME(gpte_changed): the fault retries', () => {
    const { vm, vcpu, b, kvm, hva } = shadowVm();
    const other = vm.createVcpu(1);
    other.paging.setRegs(LONG_MODE);
    other.paging.setCr3(b.root);
    b.map(0x400000, 0x2000000, { write: true, dirty: true, accessed: true });
    kvm.process.mm.write(hva + 0x2000000, 8, 0xaaaan);
    kvm.process.mm.write(hva + 0x3000000, 8, 0xbbbbn);
    const pteGpa = b.entryGpa(0x400000, 1);
    b.map(0x800000, pteGpa - (pteGpa % 4096), { write: true, dirty: true, accessed: true });
    const op = vcpu.paging.beginAccess({ gva: 0x400000, size: 8, kind: 'read' });
    expect(op.phase).toBe('walk');
    op.step(); // the CPU misses in the shadow tables
    expect(op.phase).toBe('guest-walk');
    op.step(); // FNAME(walk_addr) reads the PTE (→ 0x2000000) and faults in the pfn, no mmu_lock
    expect(op.phase).toBe('fetch');
    // vCPU 1 remaps 0x400000 → 0x3000000; the leaf table is not shadowed yet, so nothing traps
    const pte = GuestPageTableBuilder.leaf(0x3000000, { write: true, dirty: true, accessed: true }, false);
    expect(other.paging.access({ gva: 0x800000 + (pteGpa % 4096), size: 8, kind: 'write', value: BigInt(pte.lo >>> 0) | (BigInt(pte.hi >>> 0) << 32n) })).toEqual({});
    while (!op.step());
    // the stale translation was not installed: the retried walk saw the new PTE
    expect(op.result()).toEqual({ value: 0xbbbbn });
    expect(op.faults).toBe(2);
    expect(leavesOf(vm, 0x2000)).toHaveLength(0);
    assertVmInvariants(vm);
  });
});

describe('a shadow fault interleaved with a memslot deletion', () => {
  it('the deletion between faultin and mmu_lock makes the fault retry; the retry finds no slot and exits to MMIO', () => {
    const { vm, vcpu, b } = shadowVm();
    const hva1 = vm.process.mm.mmap({ length: 2 * MiB, prot: { read: true, write: true }, shared: false });
    vm.setUserMemoryRegion2({ slot: 1, flags: 0, guest_phys_addr: 0x10000000, memory_size: 2 * MiB, userspace_addr: hva1 });
    vm.process.mm.write(hva1 + 0x1000, 8, 0x5151n);
    b.map(0x400000, 0x10001000, { write: true, dirty: true, accessed: true });
    const op = vcpu.paging.beginAccess({ gva: 0x400000, size: 8, kind: 'read' });
    op.step(); // shadow miss
    op.step(); // guest walk + kvm_mmu_faultin_pfn(): the pfn of slot 1
    expect(op.phase).toBe('fetch');
    const del = vm.beginSetUserMemoryRegion2({ slot: 1, flags: 0, guest_phys_addr: 0x10000000, memory_size: 0, userspace_addr: hva1 });
    while (!del.step());
    while (!op.step());
    const r = op.result();
    expect(r.exit).toMatchObject({ reason: 'KVM_EXIT_MMIO', mmio: { phys_addr: 0x10001000, len: 8, is_write: false } });
    let mapsDeleted = false;
    vm.shadowMmu.forEachLeaf((_s, _sp, _l, gfn) => {
      if (gfn >= 0x10000 && gfn < 0x10200) mapsDeleted = true;
    });
    expect(mapsDeleted).toBe(false);
    assertVmInvariants(vm);
  });
});

describe('kvm_page_table_hashfn', () => {
  it('is hash_64(gfn, KVM_MMU_HASH_SHIFT): the top bits of gfn * GOLDEN_RATIO_64 mod 2^64', () => {
    const golden = 0x61c8864680b583ebn;
    const ref = (gfn: number) => Number(((BigInt(gfn) * golden) & ((1n << 64n) - 1n)) >> BigInt(64 - KVM_MMU_HASH_SHIFT));
    const gfns = [0, 1, 2, 0xfffff, 0x100000, 0xffffffff, 2 ** 32, 2 ** 40 - 1, 2 ** 52 - 1];
    for (let i = 0; i < 20000; i++) gfns.push(Math.floor(Math.random() * 2 ** (i % 2 ? 40 : 24)));
    for (const gfn of gfns) expect(kvmPageTableHashfn(gfn)).toBe(ref(gfn));
  });
});
