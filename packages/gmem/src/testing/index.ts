/**
 * `@ccmem/gmem/testing`: the conformance suite every memory provider passes, for authors of
 * their own `GuestMemoryFile` provider, and the recording VM it runs against. Needs vitest
 * (an optional peer dependency): call `runProviderConformance` from a vitest test file.
 */
export { FakePhysMem, FakeVm, bindSlot, fakeSlot } from './fake-vm.js';
export type { FakePhysOptions, FakeSlotOptions, FakeVmOptions, ProviderCall } from './fake-vm.js';
export { runProviderConformance } from './provider-conformance.js';
export type { MakeProvider, ProviderUnderTest } from './provider-conformance.js';
