import { describe, expect, it } from 'vitest';
import { Kvm } from '../../kvm.js';
import { checkVmInvariants, assertVmInvariants } from '../../invariants.js';
import { KVM_MEM_LOG_DIRTY_PAGES } from '../../uapi.js';
import { GuestPageTableBuilder } from '../guest-pt-builder.js';
import { VMX_EPTP_AD_ENABLE_BIT, VMX_EPTP_MT_WB, VMX_EPTP_PWL_4 } from '../guest-paging.js';
import { ACC_EXEC_MASK, ACC_USER_MASK, ACC_WRITE_MASK } from '../mmu-internal.js';
import { PT_WRITABLE_LO } from '../spte.js';
import { roleAccess, roleDirect, roleGuestMode } from './mmu-page.js';

const MiB = 1 << 20;
const SIZE = 64 * MiB;
/** L1 gpa of the 2M page both L2 ranges map */
const TARGET = 0x400000;
/** L2 range A maps TARGET read/write, range B maps it read/execute only */
const L2_A = 0x0;
const L2_B = 0x200000;

/** an L1 (TDP VM, hugetlb-backed) whose EPT tables for its L2 live in its own memory */
function nestedGuest(splitWithAccAll = false) {
  const kvm = new Kvm();
  const vm = kvm.createVm();
  const hva = kvm.process.mm.mmap({ length: SIZE, prot: { read: true, write: true }, shared: false, hugepage: '2M' });
  vm.setUserMemoryRegion2({ slot: 0, flags: 0, guest_phys_addr: 0, memory_size: SIZE, userspace_addr: hva });
  const vcpu = vm.createVcpu(0);
  let next = 0x2000000;
  const ept = new GuestPageTableBuilder(vm.guestMemory, () => (next += 4096) - 4096, 4, true);
  ept.map(L2_A, TARGET, { level: 2, read: true, write: true, exec: true, accessed: true, dirty: true });
  ept.map(L2_B, TARGET, { level: 2, read: true, write: false, exec: true, accessed: true });
  vm.shadowMmu.splitWithAccAll = splitWithAccAll;
  vcpu.paging.enterGuestMode(ept.root + (VMX_EPTP_PWL_4 | VMX_EPTP_MT_WB | VMX_EPTP_AD_ENABLE_BIT));
  return { kvm, vm, vcpu, hva, ept };
}

function enableDirtyLogging(g: ReturnType<typeof nestedGuest>): void {
  g.vm.setUserMemoryRegion2({ slot: 0, flags: KVM_MEM_LOG_DIRTY_PAGES, guest_phys_addr: 0, memory_size: SIZE, userspace_addr: g.hva });
}

describe('nested TDP: an L2 under L1 EPT tables is shadowed', () => {
  it('L2 accesses go through L1 EPT into L1 memory, as guest_mode huge SPTEs caching the EPT access', () => {
    const g = nestedGuest();
    const { vcpu, vm, kvm, hva } = g;
    expect(vcpu.paging.l2Access({ gva: L2_A + 0x5008, size: 8, kind: 'write', value: 0x77n })).toEqual({});
    expect(kvm.process.mm.read(hva + TARGET + 0x5008, 8)).toBe(0x77n);
    expect(vcpu.paging.l2Access({ gva: L2_B + 0x5008, size: 8, kind: 'read' })).toEqual({ value: 0x77n });
    const mmu = vm.shadowMmu;
    expect(mmu.stats.pages_2m).toBe(2);
    const leaves: { sp: number; access: number; writable: boolean }[] = [];
    mmu.forEachLeaf((_s, sp, level, gfn, access, lo) => {
      expect(level).toBe(2);
      expect(gfn).toBe(TARGET / 4096);
      expect(roleGuestMode(mmu.spRole(sp))).toBe(true);
      leaves.push({ sp, access, writable: (lo & PT_WRITABLE_LO) !== 0 });
    });
    expect(leaves.map((l) => l.access).sort()).toEqual([ACC_USER_MASK | ACC_EXEC_MASK, ACC_USER_MASK | ACC_EXEC_MASK | ACC_WRITE_MASK].sort());
    expect(leaves.filter((l) => l.writable)).toHaveLength(1);
    // a write through the read-only range is L1's EPT violation, reflected to L1
    const r = vcpu.paging.l2Access({ gva: L2_B + 0x10, size: 8, kind: 'write', value: 1n });
    expect(r.exception?.vector).toBe('EPT_VIOLATION');
    // the TDP MMU is not involved in L2's translation
    expect(vm.mmu.stats.pages_2m + vm.mmu.stats.pages_4k).toBe(0);
    assertVmInvariants(vm);
  });

  it('L1 EPT pages are write-tracked / write-protected while they are shadowed', () => {
    const g = nestedGuest();
    g.vcpu.paging.l2Access({ gva: L2_A, size: 8, kind: 'read' });
    const mmu = g.vm.shadowMmu;
    const pdGpa = g.ept.entryGpa(L2_A, 2);
    expect(mmu.gfnIsWriteTracked(Math.floor(pdGpa / 4096))).toBe(true);
    expect(mmu.gfnIsWriteTracked(Math.floor(g.ept.root / 4096))).toBe(true);
  });
});

describe('eager page splitting of nested huge SPTEs (kvm_shadow_mmu_try_split_huge_pages)', () => {
  function populate(g: ReturnType<typeof nestedGuest>) {
    expect(g.vcpu.paging.l2Access({ gva: L2_A + 0x5000, size: 8, kind: 'write', value: 1n })).toEqual({});
    expect(g.vcpu.paging.l2Access({ gva: L2_B + 0x5000, size: 8, kind: 'read' })).toEqual({ value: 1n });
  }

  it('splits each huge SPTE into a direct child page whose role.access is the cached guest access', () => {
    const g = nestedGuest();
    populate(g);
    enableDirtyLogging(g);
    const mmu = g.vm.shadowMmu;
    expect(mmu.stats.pages_2m).toBe(0);
    expect(mmu.stats.pages_4k).toBe(1024); // two child pages, one per cached access
    const childAccess = new Set<number>();
    mmu.forEachPage((sp) => {
      const role = mmu.spRole(sp);
      if (roleDirect(role)) childAccess.add(roleAccess(role));
    });
    expect([...childAccess].sort()).toEqual([ACC_USER_MASK | ACC_EXEC_MASK, ACC_USER_MASK | ACC_EXEC_MASK | ACC_WRITE_MASK].sort());
    expect(checkVmInvariants(g.vm)).toEqual([]);
  });

  it('a split never widens the guest permissions: the read-only range stays read-only', () => {
    const g = nestedGuest();
    populate(g);
    enableDirtyLogging(g);
    // a write through the writable range is logged and made writable again at 4K
    expect(g.vcpu.paging.l2Access({ gva: L2_A + 0x5000, size: 8, kind: 'write', value: 2n })).toEqual({});
    // the same L1 page through the read-only range still faults to L1
    const r = g.vcpu.paging.l2Access({ gva: L2_B + 0x5000, size: 8, kind: 'write', value: 3n });
    expect(r.exception?.vector).toBe('EPT_VIOLATION');
    expect(g.kvm.process.mm.read(g.hva + TARGET + 0x5000, 8)).toBe(2n);
    expect(checkVmInvariants(g.vm)).toEqual([]);
  });

  it('without the cached access bits (split with ACC_ALL) the two ranges share one child page and L2 writes through the read-only one', () => {
    const g = nestedGuest(true);
    populate(g);
    enableDirtyLogging(g);
    const mmu = g.vm.shadowMmu;
    expect(mmu.stats.pages_4k).toBe(512); // one child page, found again by the gfn hash for the second huge SPTE
    expect(g.vcpu.paging.l2Access({ gva: L2_A + 0x5000, size: 8, kind: 'write', value: 2n })).toEqual({});
    // the widening: L1 mapped L2_B read-only, yet the write lands in L1's memory
    expect(g.vcpu.paging.l2Access({ gva: L2_B + 0x5000, size: 8, kind: 'write', value: 3n })).toEqual({});
    expect(g.kvm.process.mm.read(g.hva + TARGET + 0x5000, 8)).toBe(3n);
    const v = checkVmInvariants(g.vm);
    expect(v.some((s) => s.includes('wider than the guest huge page'))).toBe(true);
  });
});

describe('L1 writes to its own EPT tables while they are shadowed', () => {
  it('an L1 write to a write-tracked EPT table is emulated (mmu_pte_write) and L2 sees the new entry', () => {
    const g = nestedGuest();
    const { vm, vcpu, ept, kvm, hva } = g;
    // L1 has touched its EPT tables through TDP before (a writable TDP leaf)
    const pdeGpa = ept.entryGpa(0x400000, 2); // L2 [4M, 6M): not mapped yet
    expect(vcpu.guestRead(pdeGpa, 8)).toEqual({ value: 0n });
    expect(vcpu.paging.l2Access({ gva: L2_A, size: 8, kind: 'read' }).value).toBeDefined();
    const mmu = vm.shadowMmu;
    const pdGfn = Math.floor(pdeGpa / 4096);
    expect(mmu.gfnIsWriteTracked(pdGfn)).toBe(true);
    expect(checkVmInvariants(vm)).toEqual([]); // L1's TDP leaf for the table is no longer writable
    expect(vcpu.paging.l2Access({ gva: 0x400000, size: 8, kind: 'read' }).exception?.vector).toBe('EPT_VIOLATION');
    // L1 maps L2 [4M, 6M) → L1 0x600000 by storing the PDE (a guest instruction through TDP)
    const pde = GuestPageTableBuilder.leaf(0x600000, { level: 2, write: true, accessed: true, dirty: true }, true);
    const before = mmu.stats.mmu_pte_write;
    expect(vcpu.guestWrite(pdeGpa, 8, BigInt(pde.lo >>> 0) | (BigInt(pde.hi >>> 0) << 32n))).toEqual({});
    expect(mmu.stats.mmu_pte_write).toBe(before + 1);
    expect(kvm.process.mm.read(hva + pdeGpa, 8)).toBe(BigInt(pde.lo >>> 0) | (BigInt(pde.hi >>> 0) << 32n));
    kvm.process.mm.write(hva + 0x600000 + 8, 8, 0x66n);
    expect(vcpu.paging.l2Access({ gva: 0x400008, size: 8, kind: 'read' })).toEqual({ value: 0x66n });
    // other L1 memory in the same 2M page as the table is still written directly
    expect(vcpu.guestWrite(pdeGpa - (pdeGpa % 4096) + 4096, 8, 5n)).toEqual({});
    expect(mmu.stats.mmu_pte_write).toBe(before + 1);
    assertVmInvariants(vm);
  });
});
