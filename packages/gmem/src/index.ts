/**
 * @ccmem/gmem: memory providers for private memslots.
 *  - guest_memfd (KVM_CREATE_GUEST_MEMFD): `guestMemfdFactory`, `GuestMemfd`, `kvmGmemPopulate`
 *  - a device region exported as an fd (model of the unmerged vfio_dmabuf RFC): `createDeviceFd`
 */
export { GuestMemfd, guestMemfdFactory, guestMemfdCapability, hasBitsOutside } from './guest-memfd.js';
export type { GuestMemfdFactoryImpl, GmemStat, GmemStats, GmemPopulatePage, PunchHoleOp, PunchHolePhase } from './guest-memfd.js';
export { kvmGmemPopulate } from './populate.js';
export type { KvmGmemPopulateArgs } from './populate.js';
export { DeviceMemoryRegion, DeviceFdFile, createDeviceFd } from './device-fd.js';
export type { DeviceMemoryRegionOptions, DeviceFdOptions } from './device-fd.js';
export { GmemBindings, slotKey } from './bindings.js';
export type { GmemBinding } from './bindings.js';
export { GmemPageStore, PAGE_UPTODATE, PAGE_HWPOISON, PAGE_PREPARED } from './page-store.js';
export { InvalidateLockBusyError } from './invalidate-lock.js';
