/**
 * Model handlers for injected firmware failures: the TDX module's TDX_OPERAND_BUSY
 * (TdxTd.injectOperandBusy) and RMPUPDATE / PSMASH failure codes (SnpHost.injectResult). The
 * kernel code that meets them runs unchanged: KVM's retries, its TDX_BUG_ON paths, the RMP
 * error paths of arch/x86/virt/svm/sev.c and arch/x86/kvm/svm/sev.c.
 */
import { fail } from '@ccmem/core';
import type { SnpBackend } from '@ccmem/snp';
import { TdxBackend } from '@ccmem/tdx';
import { rmpFailureCode } from '../ops/inject.js';
import type { ModelHandlers } from './run.js';

export const INJECT_HANDLERS = {
  tdx_inject_busy(a, m) {
    const b = m.vm.backend;
    if (!(b instanceof TdxBackend)) fail('EINVAL', 'tdx_inject_busy: the VM is not a TDX VM');
    const td = b.td;
    td.injectOperandBusy(a.count ?? 1, a.leaf, a.after ?? 0);
    return { detail: { pending: td.pendingBusyInjections } };
  },

  snp_inject_fail(a, m) {
    const b = m.vm.backend;
    if (b?.name !== 'snp') fail('EINVAL', 'snp_inject_fail: the VM is not an SEV-SNP VM');
    const host = (b as unknown as SnpBackend).host;
    // the schema accepted the code: it names a failure of this instruction
    const code = rmpFailureCode(a.insn, a.code)!;
    host.injectResult(a.insn, code, a.times ?? 1, a.after ?? 0);
    return { detail: { code, pending: host.pendingInjections(a.insn) } };
  },
} satisfies ModelHandlers;
