/**
 * @ccmem/kvm: the ccmem uAPI driven against the real /dev/kvm through FFI, with a tiny guest
 * that performs guest accesses for real, and the host's kernel profile.
 */
export * from './libc.js';
export * from './host-memory.js';
export * from './real-kvm.js';
export * from './vcpu.js';
export * from './guest.js';
export * from './profile.js';
export * from './stats.js';
export * from './host-facts.js';
export * from './host-report.js';
