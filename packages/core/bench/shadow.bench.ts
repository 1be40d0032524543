/**
 * Shadow-MMU benchmarks, through the public engine (Kvm → Vm → Vcpu.paging):
 *
 *   shadow.fault_4k                guest reads by gva through 4-level guest page tables, every
 *                                  4 KiB page of 1 GiB, on a tdp_enabled = false host: each
 *                                  read is a #PF that runs FNAME(page_fault) (walk, fetch,
 *                                  mmu_set_spte, rmap_add); faults/s
 *   shadow.eager_split             an L2 under nested EPT with 64 GiB mapped at 2 MiB (huge
 *                                  SPTEs in guest_mode shadow pages), then dirty logging on:
 *                                  kvm_shadow_mmu_try_split_huge_pages(); 4K SPTEs created/s
 *   shadow.bytes_per_4k_mapping    shadow-MMU metadata (tables, kvm_mmu_page fields,
 *                                  shadowed_translation, rmaps) per 4K mapping after the
 *                                  fault_4k populate
 *
 * Guest page tables are written into guest memory before the clock starts.
 *
 *   pnpm bench -- --filter shadow.
 */
import type { BenchCase } from '../../../bench/types.js';
import { medianRate, timed, type Timed } from '../../../bench/stats.js';
import { Kvm } from '../src/kvm.js';
import { Process } from '../src/host/process.js';
import type { Vm } from '../src/vm.js';
import type { Vcpu } from '../src/vcpu.js';
import { KVM_MEM_LOG_DIRTY_PAGES, PAGE_SIZE } from '../src/uapi.js';
import { GuestPageTableBuilder } from '../src/mmu/guest-pt-builder.js';
import { EFER_LMA, EFER_LME, EFER_NX, VMX_EPTP_AD_ENABLE_BIT, VMX_EPTP_MT_WB, VMX_EPTP_PWL_4, X86_CR0_PE, X86_CR0_PG, X86_CR0_WP, X86_CR4_PAE } from '../src/mmu/guest-paging.js';

const GiB = 2 ** 30;
const MiB2 = 2 * 2 ** 20;
/** guest data at 1 GiB; guest page tables below it */
const DATA_GPA = GiB;
const GVA_BASE = 0x7f0000000000;

let sharedProcess: Process | null = null;

interface Guest {
  kvm: Kvm;
  vm: Vm;
  vcpu: Vcpu;
  hva: number;
  bytes: number;
}

/** a shadow-MMU VM (upstream-shadow profile) with 2 GiB at gpa 0 and 1 GiB mapped at GVA_BASE */
function makeShadowGuest(): Guest {
  sharedProcess ??= new Process();
  const kvm = new Kvm({ process: sharedProcess, profile: 'upstream-shadow' });
  const vm = kvm.createVm();
  const bytes = 2 * GiB;
  const hva = kvm.process.mm.mmap({ length: bytes, prot: { read: true, write: true }, shared: false });
  vm.setUserMemoryRegion2({ slot: 0, flags: 0, guest_phys_addr: 0, memory_size: bytes, userspace_addr: hva });
  const vcpu = vm.createVcpu(0);
  let next = 0x100000;
  const b = new GuestPageTableBuilder(vm.guestMemory, () => (next += PAGE_SIZE) - PAGE_SIZE);
  for (let i = 0; i < GiB / PAGE_SIZE; i++) b.map(GVA_BASE + i * PAGE_SIZE, DATA_GPA + i * PAGE_SIZE, { write: true });
  vcpu.paging.setRegs({ cr0: X86_CR0_PE | X86_CR0_PG | X86_CR0_WP, cr4: X86_CR4_PAE, efer: EFER_LME | EFER_LMA | EFER_NX });
  vcpu.paging.setCr3(b.root);
  return { kvm, vm, vcpu, hva, bytes };
}

function destroy(g: Guest): void {
  g.kvm.process.mm.munmap(g.hva, g.bytes);
  for (const v of g.vm.vcpus) g.vm.process.close(v.fd); // each vCPU fd holds the VM
  g.vm.release();
}

let lastMetadataPer4k = 0;

function fault4k(): Timed {
  const g = makeShadowGuest();
  const pages = GiB / PAGE_SIZE;
  const paging = g.vcpu.paging;
  const a = { gva: 0, size: 8, kind: 'read' as const };
  const t = timed(() => {
    for (let i = 0; i < pages; i++) {
      a.gva = GVA_BASE + i * PAGE_SIZE;
      const r = paging.access(a);
      if (r.value === undefined) throw new Error(`read at gva 0x${a.gva.toString(16)}: ${r.reason ?? JSON.stringify(r.exception)}`);
    }
  });
  const mmu = g.vm.shadowMmu;
  if (mmu.stats.pages_4k !== pages) throw new Error(`expected ${pages} 4K shadow SPTEs, got ${mmu.stats.pages_4k}`);
  lastMetadataPer4k = mmu.metadataBytes() / pages;
  destroy(g);
  return { work: pages, ...t };
}

/** L1 with 64 GiB of hugetlb memory; its EPT maps L2 [0, 64 GiB) at 2M; L2 touches every 2M page */
function eagerSplit(): Timed {
  sharedProcess ??= new Process();
  const kvm = new Kvm({ process: sharedProcess });
  const vm = kvm.createVm();
  const bytes = 64 * GiB;
  const hva = kvm.process.mm.mmap({ length: bytes + MiB2 * 64, prot: { read: true, write: true }, shared: false, hugepage: '2M' });
  // the EPT tables live in a small slot above the guest's 64 GiB
  vm.setUserMemoryRegion2({ slot: 0, flags: 0, guest_phys_addr: 0, memory_size: bytes, userspace_addr: hva });
  vm.setUserMemoryRegion2({ slot: 1, flags: 0, guest_phys_addr: bytes, memory_size: MiB2 * 64, userspace_addr: hva + bytes });
  const vcpu = vm.createVcpu(0);
  let next = bytes;
  const ept = new GuestPageTableBuilder(vm.guestMemory, () => (next += PAGE_SIZE) - PAGE_SIZE, 4, true);
  const huge = bytes / MiB2;
  for (let i = 0; i < huge; i++) ept.map(i * MiB2, i * MiB2, { level: 2, write: true, accessed: true, dirty: true });
  vcpu.paging.enterGuestMode(ept.root + (VMX_EPTP_PWL_4 | VMX_EPTP_MT_WB | VMX_EPTP_AD_ENABLE_BIT));
  const a = { gva: 0, size: 8, kind: 'read' as const };
  for (let i = 0; i < huge; i++) {
    a.gva = i * MiB2;
    const r = vcpu.paging.l2Access(a);
    if (r.value === undefined) throw new Error(`L2 read at 0x${a.gva.toString(16)}: ${r.reason ?? JSON.stringify(r.exception)}`);
  }
  const mmu = vm.shadowMmu;
  if (mmu.stats.pages_2m !== huge) throw new Error(`expected ${huge} 2M shadow SPTEs, got ${mmu.stats.pages_2m}`);
  const t = timed(() => vm.setUserMemoryRegion2({ slot: 0, flags: KVM_MEM_LOG_DIRTY_PAGES, guest_phys_addr: 0, memory_size: bytes, userspace_addr: hva }));
  const small = bytes / PAGE_SIZE;
  if (mmu.stats.pages_4k !== small || mmu.stats.pages_2m !== 0) throw new Error(`split left ${JSON.stringify(mmu.stats)}`);
  kvm.process.mm.munmap(hva, bytes + MiB2 * 64);
  for (const v of vm.vcpus) vm.process.close(v.fd); // each vCPU fd holds the VM
  vm.release();
  return { work: small, ...t };
}

export const benches: BenchCase[] = [
  {
    name: 'shadow.fault_4k',
    unit: 'faults/s',
    target: { op: '>=', value: 1e6 },
    run: () => medianRate(Number(process.env.ROUNDS ?? 5), fault4k),
  },
  {
    name: 'shadow.eager_split',
    unit: 'SPTEs/s',
    target: { op: '>=', value: 8e6 },
    run: () => medianRate(Number(process.env.ROUNDS ?? 3), eagerSplit),
  },
  {
    name: 'shadow.bytes_per_4k_mapping',
    unit: 'bytes',
    target: { op: '<=', value: 24 },
    run: () => {
      if (lastMetadataPer4k === 0) fault4k();
      return lastMetadataPer4k;
    },
  },
];
