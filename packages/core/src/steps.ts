/**
 * Resumable kernel operations. Work the kernel does in phases under different locks
 * (a fault: snapshot seq → resolve pfn → take mmu_lock → check → install; an attribute
 * change: begin → zap → store → end; a memslot delete: invalidate → zap → commit) is written
 * as an object whose `step()` runs one phase. The synchronous API runs every phase at once
 * (`runOp`); an explorer can run another actor's phases in between.
 */
export interface KernelOp<R> {
  /** what the operation is, e.g. "kvm_vm_set_mem_attributes" */
  readonly name: string;
  /** the phase the next `step()` runs ("done" once finished) */
  readonly phase: string;
  /** run one phase; true once the operation has finished */
  step(): boolean;
  /** the result; only valid once `step()` returned true */
  result(): R;
}

/** Run every remaining phase of `op` and return its result. */
export function runOp<R>(op: KernelOp<R>): R {
  while (!op.step());
  return op.result();
}
