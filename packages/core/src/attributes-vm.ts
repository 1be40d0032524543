/** What the attribute change needs from the VM (implemented by Vm). */
import type { VendorBackend } from './backend.js';
import type { MmuInvalidate } from './invalidate.js';
import type { KvmMemorySlot } from './memslot/memslot.js';
import type { RangeMap } from './range-map.js';
import type { Tracer } from './trace.js';

export interface AttributesVm {
  readonly hasPrivateMem: boolean;
  readonly attributes: RangeMap;
  readonly mmuInvalidate: MmuInvalidate;
  readonly backend: VendorBackend | null;
  readonly tracer: Tracer;
  /** every memslot of every address space intersecting [start, end) */
  forEachMemslotInGfnRange(start: number, end: number, cb: (slot: KvmMemorySlot) => void): void;
  /** kvm_unmap_gfn_range() body: zap [start,end) in the roots `filter` selects; true = flush */
  zapGfnRange(start: number, end: number, filter: number): boolean;
  flushRemoteTlbs(): void;
}
