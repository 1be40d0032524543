/**
 * Guest paging: the vCPU's control registers, guest page tables written into guest memory,
 * and guest accesses by guest-virtual address. Under the shadow MMU (a profile without TDP,
 * e.g. `upstream-shadow`) KVM shadows these tables (docs/shadow-mmu.md); under TDP the
 * hardware walks them and KVM only sees the gpas.
 */
import { z } from 'zod';
import { parseNumber } from '../numbers.js';
import { accessSize, addr, bool, field, num, u64 } from './fields.js';
import { defineOp } from './op.js';

/** one of a few small integers (page-table levels) */
const oneOf = <const T extends number>(values: readonly T[]) =>
  field(`one of ${values.join(', ')}`, (v) => {
    const n = parseNumber(v);
    if (!(values as readonly number[]).includes(n)) throw new Error(`expected one of ${values.join(', ')}, got ${n}`);
    return n as T;
  }).describe(values.join('/'));

const leaf = z.strictObject({
  va: num(),
  pa: num(),
  /** leaf level: 1 (4 KiB, default), 2 (2 MiB) or 3 (1 GiB) */
  level: oneOf([1, 2, 3] as const).optional(),
  write: bool().optional(),
  user: bool().optional(),
  nx: bool().optional(),
  /** EPT tables: R and X (default true) */
  read: bool().optional(),
  exec: bool().optional(),
  accessed: bool().optional(),
  dirty: bool().optional(),
});

const gvaAccess = <T extends z.ZodRawShape>(own: T) => z.strictObject({ vcpu: addr(), gva: num(), size: accessSize(), user: bool().optional(), ...own });

export const PAGING_OPS = {
  set_sregs: defineOp({
    args: z.strictObject({ vcpu: addr(), cr0: num().optional(), cr3: addr().optional(), cr4: num().optional(), efer: num().optional() }),
    does: '`KVM_SET_SREGS` (the control registers only): CR0.PG / CR4.PAE / CR4.LA57 / EFER.LME turn 4- or 5-level paging on; `kvm_mmu_reset_context()` drops the roots',
  }),
  guest_page_table: defineOp({
    args: z.strictObject({
      /** guest-physical address of the first table page; more are taken upwards, 4 KiB each */
      tables_at: num(),
      levels: oneOf([4, 5] as const).optional(),
      /** EPT format (an L1 hypervisor's tables for its L2) instead of x86-64 */
      ept: bool().optional(),
      map: z.array(leaf).min(1),
    }),
    does: 'write guest page tables into guest memory (as a guest kernel would): one leaf per `map` entry, tables created as needed',
    result: 'result: the root table gpa (for `cr3`); `detail.entries`: each leaf entry\'s gpa (for a later guest page-table write)',
  }),
  guest_load_cr3: defineOp({
    args: z.strictObject({ vcpu: addr(), cr3: addr() }),
    does: 'the guest loads CR3 (`kvm_set_cr3()` → `kvm_mmu_new_pgd()`, then unsync pages are synced)',
  }),
  guest_invlpg: defineOp({
    args: z.strictObject({ vcpu: addr(), gva: num() }),
    does: 'the guest runs INVLPG (`kvm_mmu_invlpg()`: the unsync SPTE mapping the gva is synced)',
  }),
  guest_read_gva: defineOp({
    args: gvaAccess({}),
    does: 'guest load by guest-virtual address (`FNAME(walk_addr)` sets A bits; a guest fault is injected: `exception: "#PF"`, `detail.exception.errorCode`)',
    result: 'value, an exit, or an injected #PF',
  }),
  guest_write_gva: defineOp({
    args: gvaAccess({ value: u64() }),
    does: 'guest store by guest-virtual address (sets A/D bits; a store to a write-tracked page-table page is emulated: `mmu_pte_write`)',
    result: 'an exit, or an injected #PF',
  }),
  enter_guest_mode: defineOp({
    args: z.strictObject({ vcpu: addr(), eptp: num() }),
    does: 'nested VM-entry with EPT: the vCPU runs L2, whose translation is L1\'s EPT tables at `eptp` (shadowed with `role.guest_mode`)',
  }),
  leave_guest_mode: defineOp({ args: z.strictObject({ vcpu: addr() }), does: 'nested VM-exit: back to L1' }),
  l2_read: defineOp({
    args: z.strictObject({ vcpu: addr(), ngpa: num(), size: accessSize() }),
    does: 'L2 load by L2 guest-physical address, through L1\'s EPT (a violation is reflected to L1: `exception: EPT_VIOLATION`)',
    result: 'value, an exit, or an EPT violation for L1',
  }),
  l2_write: defineOp({
    args: z.strictObject({ vcpu: addr(), ngpa: num(), size: accessSize(), value: u64() }),
    does: 'L2 store by L2 guest-physical address, through L1\'s EPT',
    result: 'an exit, or an EPT violation for L1',
  }),
};
