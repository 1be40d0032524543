/** vCPU: guest accesses and the exits userspace completes. */
import { kvmGpaToGfn } from '@ccmem/core';
import { z } from 'zod';
import { accessSize, addr, bool, constant, num, u64 } from './fields.js';
import { defineOp, type FootprintVm } from './op.js';

/** the gfn a guest access faults on: the shared alias bit stripped (kvm_gfn_direct_bits()) */
function accessGfns(a: { gpa: number }, vm: FootprintVm): readonly [number, number] {
  const g = kvmGpaToGfn(vm, a.gpa);
  // the first phase is the walk: the leaf covering gfn
  return [g, g + 1];
}

/** a guest access: vcpu, gpa, the access's own fields, private */
const access = <T extends z.ZodRawShape>(own: T) => z.strictObject({ vcpu: addr(), gpa: num(), ...own, private: bool().optional() });

export const GUEST_OPS = {
  guest_read: defineOp({
    args: access({ size: accessSize() }),
    does: 'the guest loads from `gpa` (`KVM_RUN` until it completes or exits)',
    result: 'value, or an exit',
    footprint: { gfns: accessGfns },
  }),
  guest_write: defineOp({
    args: access({ size: accessSize(), value: u64() }),
    does: 'the guest stores `value` at `gpa`',
    result: 'an exit, if any',
    footprint: { gfns: accessGfns },
  }),
  guest_fetch: defineOp({
    args: access({}),
    does: 'the guest executes from `gpa`',
    result: 'an exit, if any',
    footprint: { gfns: accessGfns },
  }),
  complete_mmio: defineOp({
    args: z.strictObject({ vcpu: addr(), data: u64().optional() }),
    does: 'userspace completes the pending `KVM_EXIT_MMIO` and re-enters; for a read, `data` is what the load returns',
    result: 'value: the loaded value, for a read',
  }),
  complete_hypercall: defineOp({
    args: z.strictObject({ vcpu: addr(), ret: num() }),
    does: 'userspace sets `hypercall.ret` and re-enters',
    result: 'an exit, if any',
  }),
  set_idt: defineOp({
    args: z.strictObject({ vcpu: addr(), base: num(), limit: num() }),
    does: 'the guest loads its IDTR (LIDT): the table exceptions are delivered through (reset value: base 0, limit 0xffff)',
  }),
  guest_exception: defineOp({
    args: z.strictObject({ vcpu: addr(), vector: constant('vector') }),
    does:
      'the guest raises exception `vector` (e.g. `GP_VECTOR`: a store to a non-canonical address) and the CPU delivers it through the IDT: a gate in memory without a memslot is `KVM_EXIT_INTERNAL_ERROR` (`KVM_INTERNAL_ERROR_DELIVERY_EV`, `gpa` = the gate), a gate beyond the limit or not present raises #GP / #NP, two contributory faults a #DF, a fault on #DF a triple fault (`KVM_EXIT_SHUTDOWN`)',
    result: '`exception` (the guest\'s handler runs), or an exit',
  }),
};
