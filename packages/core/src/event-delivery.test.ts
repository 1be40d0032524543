import { describe, expect, it } from 'vitest';
import { Kvm } from './kvm.js';
import { GP_VECTOR, KVM_INTERNAL_ERROR_DELIVERY_EV, NP_VECTOR } from './event-delivery.js';

const UD_VECTOR = 6;
const MF_VECTOR = 16;
const PRESENT = 1n << 47n;

describe('exception delivery through the IDT', () => {
  function setup() {
    const kvm = new Kvm();
    const vm = kvm.createVm();
    const ram = kvm.process.mm.mmap({ length: 2 << 20, prot: { read: true, write: true }, shared: true });
    vm.setUserMemoryRegion({ slot: 0, flags: 0, guest_phys_addr: 0x100000, memory_size: 2 << 20, userspace_addr: ram });
    const vcpu = vm.createVcpu(0);
    return { kvm, vcpu, ram };
  }

  it('a gate in MMIO is KVM_INTERNAL_ERROR_DELIVERY_EV with the gate gpa, and nothing is left pending', () => {
    const { vcpu } = setup();
    vcpu.idt = { base: 0xc0000000, limit: 0xfff };
    const r = vcpu.raiseException(GP_VECTOR);
    expect(r.exit).toEqual({ reason: 'KVM_EXIT_INTERNAL_ERROR', internal: { suberror: KVM_INTERNAL_ERROR_DELIVERY_EV, ndata: 5, gpa: 0xc00000d0 } });
    expect(vcpu.mmioNeeded).toBe(false);
    expect(vcpu.lastExit).toEqual(r.exit);
  });

  it('not-present gates: #GP → #NP → #DF → triple fault (KVM_EXIT_SHUTDOWN); a present gate delivers', () => {
    const { kvm, vcpu, ram } = setup();
    vcpu.idt = { base: 0x100000, limit: 0xfff };
    expect(vcpu.raiseException(GP_VECTOR).exit).toEqual({ reason: 'KVM_EXIT_SHUTDOWN' });
    kvm.process.mm.write(ram + GP_VECTOR * 16, 8, PRESENT);
    expect(vcpu.raiseException(GP_VECTOR).exception?.vector).toBe('#GP');
    // a benign exception whose gate is missing is replaced by the #NP, not a #DF
    kvm.process.mm.write(ram + NP_VECTOR * 16, 8, PRESENT);
    expect(vcpu.raiseException(UD_VECTOR).exception?.vector).toBe('#NP');
  });

  it('a gate beyond the IDT limit raises #GP', () => {
    const { kvm, vcpu, ram } = setup();
    kvm.process.mm.write(ram + GP_VECTOR * 16, 8, PRESENT);
    vcpu.idt = { base: 0x100000, limit: GP_VECTOR * 16 + 15 };
    expect(vcpu.raiseException(MF_VECTOR).exception?.vector).toBe('#GP');
  });
});
