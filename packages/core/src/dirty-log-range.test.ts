/**
 * Vm.enableDirtyLogPtRange() (a whole chunk of dirty bits taken or cleared at once) does what
 * kvm_arch_mmu_enable_log_dirty_pt_masked() does called word by word with every bit set: the
 * same splits and the same write-protected SPTEs, with and without KVM_DIRTY_LOG_INITIALLY_SET,
 * over huge and 4K mappings.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Kvm } from './kvm.js';
import { KVM_FILTER_PRIVATE, KVM_FILTER_SHARED } from './backend.js';
import { checkVmInvariants } from './invariants.js';
import { KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, KVM_MEM_LOG_DIRTY_PAGES } from './uapi.js';

const MiB2 = 2 << 20;
const SLOT_PAGES = (3 * MiB2) / 4096;

function twin(initiallySet: boolean, writes: number[], logFirst: boolean) {
  const kvm = new Kvm();
  const vm = kvm.createVm();
  if (initiallySet) vm.enableCap({ cap: KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, args: [3] });
  const hva = kvm.process.mm.mmap({ length: 3 * MiB2, prot: { read: true, write: true }, shared: false, hugepage: '2M' });
  const region = { slot: 0, flags: logFirst ? KVM_MEM_LOG_DIRTY_PAGES : 0, guest_phys_addr: MiB2, memory_size: 3 * MiB2, userspace_addr: hva };
  vm.setUserMemoryRegion2(region);
  const vcpu = vm.createVcpu(0);
  for (const p of writes) vcpu.guestWrite(MiB2 + p * 4096, 4, 1n);
  if (!logFirst) vm.setUserMemoryRegion2({ ...region, flags: KVM_MEM_LOG_DIRTY_PAGES });
  return { vm, slot: vm.memslots.idToMemslot(0, 0)! };
}

function leaves(vm: ReturnType<Kvm['createVm']>): string[] {
  const out: string[] = [];
  vm.mmu.forEachLeaf(0, 2 ** 40, KVM_FILTER_PRIVATE | KVM_FILTER_SHARED, (gfn, level, pfn, writable) => out.push(`${gfn}:${level}:${pfn}:${writable}`));
  return out;
}

describe('enableDirtyLogPtRange', () => {
  it('equals enableDirtyLogPtMasked word by word with every bit set', () => {
    fc.assert(
      fc.property(
        fc.boolean(),
        fc.boolean(),
        fc.array(fc.integer({ min: 0, max: SLOT_PAGES - 1 }), { maxLength: 12 }),
        fc.integer({ min: 0, max: SLOT_PAGES / 32 - 1 }),
        fc.integer({ min: 1, max: SLOT_PAGES / 32 }),
        (initiallySet, logFirst, writes, firstWord, nwords) => {
          const n = Math.min(nwords, SLOT_PAGES / 32 - firstWord) * 32;
          const a = twin(initiallySet, writes, logFirst);
          const b = twin(initiallySet, writes, logFirst);
          expect(leaves(a.vm)).toEqual(leaves(b.vm));
          a.vm.enableDirtyLogPtRange(a.slot, firstWord * 32, n);
          for (let off = firstWord * 32; off < firstWord * 32 + n; off += 32) b.vm.enableDirtyLogPtMasked(b.slot, off, 0xffffffff);
          expect(leaves(a.vm)).toEqual(leaves(b.vm));
          expect(a.vm.mmu.stats).toEqual(b.vm.mmu.stats);
          expect(checkVmInvariants(a.vm, { allowInvalidSlots: true }).filter((v) => !/dirty bit is clear|not marked dirty/.test(v))).toEqual([]);
        },
      ),
      { numRuns: 60 },
    );
  });
});
