/**
 * Exception delivery through the guest's IDT, as far as KVM takes part in it.
 *
 * The CPU delivers a guest exception itself: it reads the gate at IDTR.base + vector * 16
 * (long-mode gates) through the guest's page tables and KVM's MMU. KVM comes in when that
 * read faults:
 *  - the gate's gpa has no memslot (MMIO): KVM cannot emulate MMIO while an event is being
 *    vectored and exits with KVM_EXIT_INTERNAL_ERROR, suberror KVM_INTERNAL_ERROR_DELIVERY_EV,
 *    `data[3]` the gpa (arch/x86/kvm/x86.c kvm_prepare_event_vectoring_exit(), from
 *    kvm_mmu_page_fault() / handle_ept_misconfig() when the exit has IDT-vectoring info);
 *  - the gate lies beyond IDTR.limit (#GP) or is not present (#NP): a second exception. Two
 *    contributory exceptions (or a page fault followed by one) make a #DF; a fault while
 *    delivering #DF is a triple fault, which KVM reports as KVM_EXIT_SHUTDOWN
 *    (kvm_multiple_exception(): KVM_REQ_TRIPLE_FAULT; vcpu_enter_guest(): KVM_EXIT_SHUTDOWN).
 * A gate that reads fine and is present delivers the exception to the guest's handler:
 * KVM is not involved, the outcome is the guest's exception.
 */
import type { GuestAccessResult } from './vcpu.js';
import { X86_CR0_PG } from './mmu/guest-paging.js';

/** kvm_run.internal.suberror: an event could not be delivered (include/uapi/linux/kvm.h) */
export const KVM_INTERNAL_ERROR_DELIVERY_EV = 3;

export const DE_VECTOR = 0;
export const DF_VECTOR = 8;
export const TS_VECTOR = 10;
export const NP_VECTOR = 11;
export const SS_VECTOR = 12;
export const GP_VECTOR = 13;
export const PF_VECTOR = 14;

/** the x86 mnemonic of an exception vector (#GP, #PF, ...) */
export const EXCEPTION_NAMES: Readonly<Record<number, string>> = {
  0: '#DE', 1: '#DB', 2: '#NMI', 3: '#BP', 4: '#OF', 5: '#BR', 6: '#UD', 7: '#NM', 8: '#DF', 10: '#TS', 11: '#NP', 12: '#SS',
  13: '#GP', 14: '#PF', 16: '#MF', 17: '#AC', 18: '#MC', 19: '#XM', 20: '#VE', 21: '#CP', 29: '#VC',
};

/** the guest's interrupt descriptor table register (LIDT; KVM_SET_SREGS `idt`) */
export interface IdtRegister {
  base: number;
  limit: number;
}

/** the reset value of IDTR (SDM "Initialization": base 0, limit 0xffff) */
export const IDTR_RESET: Readonly<IdtRegister> = { base: 0, limit: 0xffff };

/** long-mode interrupt gates are 16 bytes */
const GATE_SIZE = 16;

/** exception_class() (arch/x86/kvm/x86.c): contributory ones make a #DF with each other */
function exceptionClass(vector: number): 'benign' | 'contributory' | 'pf' {
  if (vector === PF_VECTOR) return 'pf';
  if (vector === DE_VECTOR || vector === TS_VECTOR || vector === NP_VECTOR || vector === SS_VECTOR || vector === GP_VECTOR) return 'contributory';
  return 'benign';
}

/** what a gate read through the vCPU gave: its low qword, or the exit / fault of the read */
interface GateRead {
  readonly value?: bigint;
  readonly result?: GuestAccessResult;
}

/** the vCPU interface event delivery needs */
export interface EventVcpu {
  /** a guest-physical load (paging off) */
  access(a: { gpa: number; size: 8; kind: 'read'; private: false }): GuestAccessResult;
  /** a guest-virtual load (paging on) */
  readonly paging: { regs: { cr0: number }; access(a: { gva: number; size: 8; kind: 'read' }): GuestAccessResult };
  /** forget the emulated MMIO access the failed gate read left (KVM does not emulate it) */
  abortEmulatedMmio(): void;
}

function readGate(vcpu: EventVcpu, addr: number): GateRead {
  const r = vcpu.paging.regs.cr0 & X86_CR0_PG ? vcpu.paging.access({ gva: addr, size: 8, kind: 'read' }) : vcpu.access({ gpa: addr, size: 8, kind: 'read', private: false });
  if (r.value !== undefined && r.exit === undefined && r.errno === undefined && r.exception === undefined) return { value: r.value };
  return { result: r };
}

/**
 * The guest raises exception `vector` (e.g. a #GP from a store to a non-canonical address) with
 * IDTR `idt`: what KVM_RUN reports. The outcome is the exception the guest's handler receives,
 * KVM_EXIT_INTERNAL_ERROR (DELIVERY_EV) when a gate is MMIO, or KVM_EXIT_SHUTDOWN on a triple fault.
 */
export function deliverException(vcpu: EventVcpu, vector: number, idt: Readonly<IdtRegister>): GuestAccessResult {
  let cur = vector;
  for (let round = 0; round < 4; round++) {
    const gate = idt.base + cur * GATE_SIZE;
    let fault: number;
    if (cur * GATE_SIZE + GATE_SIZE - 1 > idt.limit) {
      fault = GP_VECTOR; // beyond the limit: #GP(vector * 8 + 2)
    } else {
      const r = readGate(vcpu, gate);
      if (r.result !== undefined) {
        const exit = r.result.exit;
        if (exit?.reason === 'KVM_EXIT_MMIO') {
          // kvm_prepare_event_vectoring_exit(): no MMIO emulation while vectoring
          const gpa = exit.mmio.phys_addr;
          vcpu.abortEmulatedMmio();
          return {
            exit: { reason: 'KVM_EXIT_INTERNAL_ERROR', internal: { suberror: KVM_INTERNAL_ERROR_DELIVERY_EV, ndata: 5, gpa } },
            reason: `kvm_prepare_event_vectoring_exit: the ${EXCEPTION_NAMES[cur] ?? `vector ${cur}`} gate at gpa 0x${gpa.toString(16)} is MMIO`,
          };
        }
        if (r.result.exception?.vector === '#PF') fault = PF_VECTOR;
        else return r.result; // any other exit (a memory fault, an error) ends KVM_RUN as is
      } else if (((r.value! >> 47n) & 1n) === 0n) {
        fault = NP_VECTOR; // gate not present: #NP(vector * 8 + 2)
      } else {
        return {
          exception: { vector: EXCEPTION_NAMES[cur] ?? `vector ${cur}`, reason: `delivered through the gate at 0x${gate.toString(16)}` },
          reason: 'the guest handles the exception: KVM is not involved',
        };
      }
    }
    if (cur === DF_VECTOR) {
      return { exit: { reason: 'KVM_EXIT_SHUTDOWN' }, reason: 'kvm_multiple_exception: a fault while delivering #DF is a triple fault (KVM_REQ_TRIPLE_FAULT)' };
    }
    const c1 = exceptionClass(cur);
    const c2 = exceptionClass(fault);
    // kvm_multiple_exception(): contributory after contributory, or anything but benign after #PF
    cur = (c1 === 'contributory' && c2 === 'contributory') || (c1 === 'pf' && c2 !== 'benign') ? DF_VECTOR : fault;
  }
  return { exit: { reason: 'KVM_EXIT_SHUTDOWN' }, reason: 'triple fault' };
}
