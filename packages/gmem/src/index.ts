/**
 * @ccmem/gmem: memory providers for private memslots.
 *  - guest_memfd (KVM_CREATE_GUEST_MEMFD): `guestMemfdFactory`, `GuestMemfd`
 *  - a device region exported as an fd (model of the unmerged vfio_dmabuf RFC): `createDeviceFd`
 * Both implement @ccmem/core's GuestMemoryFile, population (kvm_gmem_populate) included.
 */
export { GuestMemfd, guestMemfdFactory } from './guest-memfd.js';
export type { GuestMemfdFactoryImpl, GmemStat, GmemStats, PunchHoleOp, PunchHolePhase } from './guest-memfd.js';
export { DeviceMemoryRegion, DeviceFdFile, createDeviceFd } from './device-fd.js';
export type { DeviceMemoryRegionOptions, DeviceFdOptions } from './device-fd.js';
export { PAGE_UPTODATE, PAGE_HWPOISON, PAGE_PREPARED } from './page-store.js';
export { InvalidateLockBusyError } from './invalidate-lock.js';
