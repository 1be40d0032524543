/**
 * Kernel events, named after the kernel's tracepoints where one exists
 * (`kvm_userspace_memory_region`, `kvm_mmu_set_spte`, `kvm_mmu_zap_spte`...), or after the
 * kernel function that does the work. Later packages add their own event names
 * (`rmpupdate`, `tdh_mem_page_aug`, ...). Tracing is off unless someone listens.
 */
export interface TraceEvent {
  /** tracepoint or kernel function name */
  readonly name: string;
  /** event fields, with the kernel's field names */
  readonly fields: Readonly<Record<string, number | string | boolean | bigint | null>>;
}

export type TraceListener = (event: TraceEvent) => void;

export class Tracer {
  private listeners: TraceListener[] = [];
  /** true when at least one listener is attached; hot paths test this before building events */
  enabled = false;

  on(listener: TraceListener): () => void {
    this.listeners.push(listener);
    this.enabled = true;
    return () => {
      this.listeners = this.listeners.filter((l) => l !== listener);
      this.enabled = this.listeners.length > 0;
    };
  }

  emit(name: string, fields: TraceEvent['fields']): void {
    if (!this.enabled) return;
    const event: TraceEvent = { name, fields };
    for (const l of this.listeners) l(event);
  }
}

/** Collects events into an array, e.g. for `ccmem explain` and tests. */
export function recordTrace(tracer: Tracer): { events: TraceEvent[]; stop: () => void } {
  const events: TraceEvent[] = [];
  const stop = tracer.on((e) => events.push(e));
  return { events, stop };
}
