/**
 * Model handlers for injected firmware failures: the TDX module's TDX_OPERAND_BUSY
 * (TdxTd.injectOperandBusy) and RMPUPDATE / PSMASH failure codes (SnpHost.injectResult). The
 * kernel code that meets them runs unchanged: KVM's retries, its TDX_BUG_ON paths, the RMP
 * error paths of arch/x86/virt/svm/sev.c and arch/x86/kvm/svm/sev.c.
 */
import { rmpFailureCode } from '../ops/inject.js';
import type { ModelHandlers } from './run.js';

export const INJECT_HANDLERS = {
  tdx_inject_busy(a, m) {
    const td = m.tdxBackend('tdx_inject_busy').td;
    td.injectOperandBusy(a.count ?? 1, a.leaf, a.after ?? 0);
    return { detail: { pending: td.pendingBusyInjections } };
  },

  snp_inject_fail(a, m) {
    const host = m.snpBackend('snp_inject_fail').host;
    // the schema accepted the code: it names a failure of this instruction
    const code = rmpFailureCode(a.insn, a.code)!;
    host.injectResult(a.insn, code, a.times ?? 1, a.after ?? 0);
    return { detail: { code, pending: host.pendingInjections(a.insn) } };
  },
} satisfies ModelHandlers;
