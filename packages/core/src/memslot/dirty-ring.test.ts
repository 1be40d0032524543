import { describe, expect, it } from 'vitest';
import { Kvm } from '../kvm.js';
import { LINUX_6_18_PVM_PROFILE, UPSTREAM_SHADOW_PROFILE, UPSTREAM_PROFILE } from '../profile.js';
import type { KernelProfile } from '../backend.js';
import { assertVmInvariants } from '../invariants.js';
import { errnoOf } from '../testing/errno-of.js';
import { recordTrace } from '../trace.js';
import { testDirtyBit } from './dirty-log.js';
import {
  KVM_CAP_DIRTY_LOG_RING,
  KVM_CAP_DIRTY_LOG_RING_ACQ_REL,
  KVM_CAP_DIRTY_LOG_RING_WITH_BITMAP,
  KVM_MEM_LOG_DIRTY_PAGES,
} from '../uapi.js';
import {
  KVM_DIRTY_GFN_F_DIRTY,
  KVM_DIRTY_GFN_F_RESET,
  KvmDirtyRing,
  dirtyRingSizeError,
  kvmPageInDirtyRing,
} from './dirty-ring.js';
import type { KvmMemorySlot } from './memslot.js';
import type { Vcpu } from '../vcpu.js';

const MiB = 1 << 20;
const BASE = 0x100000;

function ringVm(opts: { ring?: number; profile?: KernelProfile; slotFlags?: number; size?: number } = {}) {
  const kvm = new Kvm({ profile: opts.profile ?? UPSTREAM_PROFILE });
  const vm = kvm.createVm();
  const size = opts.size ?? 2 * MiB;
  const hva = kvm.process.mm.mmap({ length: size, prot: { read: true, write: true }, shared: false });
  if (opts.ring !== 0) vm.enableCap({ cap: KVM_CAP_DIRTY_LOG_RING, args: [opts.ring ?? 4096] });
  vm.setUserMemoryRegion2({ slot: 1, flags: opts.slotFlags ?? KVM_MEM_LOG_DIRTY_PAGES, guest_phys_addr: BASE, memory_size: size, userspace_addr: hva });
  const vcpu = vm.createVcpu(0);
  return { kvm, vm, hva, vcpu };
}

/** the VMM's harvest: collect DIRTY entries from `fetch` on, mark them RESET */
function harvest(vcpu: Vcpu, fetch: { i: number }): number[] {
  const ring = vcpu.dirtyRing!;
  const out: number[] = [];
  while (ring.flagsAt(fetch.i) === KVM_DIRTY_GFN_F_DIRTY) {
    out.push(ring.entry(fetch.i).offset);
    ring.setFlags(fetch.i, KVM_DIRTY_GFN_F_RESET);
    fetch.i++;
  }
  return out;
}

describe('KVM_CAP_DIRTY_LOG_RING (kvm_vm_ioctl_enable_dirty_log_ring)', () => {
  it('reports the largest ring in bytes for both ring caps, and no ring + bitmap on x86', () => {
    const vm = new Kvm().createVm();
    expect(vm.checkExtension(KVM_CAP_DIRTY_LOG_RING)).toBe(65536 * 16);
    expect(vm.checkExtension(KVM_CAP_DIRTY_LOG_RING_ACQ_REL)).toBe(65536 * 16);
    expect(vm.checkExtension(KVM_CAP_DIRTY_LOG_RING_WITH_BITMAP)).toBe(0);
  });

  it('checks the size: power of two, at least a page and the reserved entries, at most 64K entries', () => {
    expect(dirtyRingSizeError(0, 64)).toBe('EINVAL');
    expect(dirtyRingSizeError(4096 + 16, 64)).toBe('EINVAL');
    expect(dirtyRingSizeError(2048, 64)).toBe('EINVAL');
    expect(dirtyRingSizeError(4096, 64)).toBeNull();
    // VMX PML reserves 512 more entries: 576 * 16 bytes no longer fit in a page or 8 KiB
    expect(dirtyRingSizeError(8192, 64 + 512)).toBe('EINVAL');
    expect(dirtyRingSizeError(16384, 64 + 512)).toBeNull();
    expect(dirtyRingSizeError(2 * MiB, 64)).toBe('E2BIG');
    const vm = new Kvm().createVm();
    expect(errnoOf(() => vm.enableCap({ cap: KVM_CAP_DIRTY_LOG_RING, args: [3 * 4096] }))).toBe('EINVAL');
    expect(errnoOf(() => vm.enableCap({ cap: KVM_CAP_DIRTY_LOG_RING, args: [2 * MiB] }))).toBe('E2BIG');
    // args[0] is passed as a u32: the high half is dropped
    expect(errnoOf(() => vm.enableCap({ cap: KVM_CAP_DIRTY_LOG_RING_ACQ_REL, args: [2 ** 32 + 4096] }))).toBeUndefined();
    expect(vm.dirtyRingSize).toBe(4096);
  });

  it('is set once, and only before the first vCPU', () => {
    const vm = new Kvm().createVm();
    vm.enableCap({ cap: KVM_CAP_DIRTY_LOG_RING, args: [8192] });
    expect(errnoOf(() => vm.enableCap({ cap: KVM_CAP_DIRTY_LOG_RING, args: [8192] }))).toBe('EINVAL');
    const vm2 = new Kvm().createVm();
    vm2.createVcpu(0);
    expect(errnoOf(() => vm2.enableCap({ cap: KVM_CAP_DIRTY_LOG_RING, args: [4096] }))).toBe('EINVAL');
    expect(vm2.dirtyRingSize).toBe(0);
  });

  it('KVM_CAP_DIRTY_LOG_RING_WITH_BITMAP: EINVAL on x86; with the option, after the ring and before any memslot', () => {
    const vm = new Kvm().createVm();
    vm.enableCap({ cap: KVM_CAP_DIRTY_LOG_RING, args: [4096] });
    expect(errnoOf(() => vm.enableCap({ cap: KVM_CAP_DIRTY_LOG_RING_WITH_BITMAP }))).toBe('EINVAL');
    const arm = { ...UPSTREAM_PROFILE, name: 'ring-with-bitmap', dirtyRingWithBitmap: true };
    const vm2 = new Kvm({ profile: arm }).createVm();
    expect(errnoOf(() => vm2.enableCap({ cap: KVM_CAP_DIRTY_LOG_RING_WITH_BITMAP }))).toBe('EINVAL'); // no ring yet
    vm2.enableCap({ cap: KVM_CAP_DIRTY_LOG_RING, args: [4096] });
    expect(errnoOf(() => vm2.enableCap({ cap: KVM_CAP_DIRTY_LOG_RING_WITH_BITMAP, flags: 1 }))).toBe('EINVAL');
    vm2.enableCap({ cap: KVM_CAP_DIRTY_LOG_RING_WITH_BITMAP });
    expect(vm2.useDirtyBitmap).toBe(true);
  });
});

describe('per-vCPU rings', () => {
  it('guest writes push (as_id << 16 | slot, offset) entries; KVM_GET_DIRTY_LOG is ENXIO (no bitmap)', () => {
    const { vm, vcpu } = ringVm();
    expect(vcpu.dirtyRing!.size).toBe(256);
    expect(vcpu.dirtyRing!.softLimit).toBe(192);
    vcpu.guestWrite(BASE + 0x3000, 8, 1n);
    vcpu.guestWrite(BASE, 4, 2n);
    vcpu.guestWrite(BASE + 0x3008, 8, 3n); // same page: already writable, no second entry
    vcpu.guestRead(BASE + 0x5000, 8); // reads dirty nothing
    const ring = vcpu.dirtyRing!;
    expect(ring.used).toBe(2);
    expect(ring.entry(0)).toEqual({ flags: KVM_DIRTY_GFN_F_DIRTY, slot: 1, offset: 3 });
    expect(ring.entry(1)).toEqual({ flags: KVM_DIRTY_GFN_F_DIRTY, slot: 1, offset: 0 });
    expect(ring.entry(2).flags).toBe(0);
    expect(vm.memslots.idToMemslot(0, 1)!.dirtyBitmap).toBeNull();
    expect(errnoOf(() => vm.getDirtyLog({ slot: 1 }))).toBe('ENXIO');
    expect(errnoOf(() => vm.clearDirtyLog({ slot: 1, first_page: 0, num_pages: 64, dirty_bitmap: new Uint8Array(8) }))).toBe('ENXIO');
    assertVmInvariants(vm);
  });

  it('KVM_RESET_DIRTY_RINGS resets only harvested entries and write-protects their pages again', () => {
    const { vm, vcpu } = ringVm();
    expect(errnoOf(() => new Kvm().createVm().resetDirtyRings())).toBe('EINVAL');
    for (const p of [0, 1, 2]) vcpu.guestWrite(BASE + p * 0x1000, 8, 1n);
    const ring = vcpu.dirtyRing!;
    expect(vm.resetDirtyRings()).toBe(0); // nothing harvested yet
    ring.setFlags(0, KVM_DIRTY_GFN_F_RESET);
    ring.setFlags(1, KVM_DIRTY_GFN_F_RESET);
    expect(vm.resetDirtyRings()).toBe(2);
    expect(ring.resetIndex).toBe(2);
    expect(ring.entry(0).flags).toBe(0);
    expect(ring.entry(2).flags).toBe(KVM_DIRTY_GFN_F_DIRTY);
    // pages 0 and 1 are write-protected again: the next writes push again; page 2 is not
    vcpu.guestWrite(BASE + 0x2000, 8, 2n);
    vcpu.guestWrite(BASE + 0x1000, 8, 2n);
    expect(ring.used).toBe(2);
    expect(ring.entry(3).offset).toBe(1);
    assertVmInvariants(vm);
  });

  it('coalesces resets of nearby offsets (forwards and backwards) into 64-bit masks', () => {
    const ring = new KvmDirtyRing(0, 4096, 64);
    for (const off of [10, 12, 73, 9, 5, 200]) ring.push(1, off);
    for (let i = 0; i < 6; i++) ring.setFlags(i, KVM_DIRTY_GFN_F_RESET);
    const calls: [number, number][] = [];
    const slot = { npages: 512, id: 1 } as KvmMemorySlot;
    const n = ring.reset({ nrAsIds: () => 1, idToMemslot: () => slot, enableDirtyLogPtMasked: (_s, off, mask) => calls.push([off, mask]) });
    expect(n).toBe(6);
    // 10, 12 and 73 (delta 63) form one batch at 10; 9 cannot join it (bit 63 would fall off
    // the top), so it starts a batch that 5 joins backwards (the mask moves down to 5); 200
    // is its own. Each 64-bit mask is applied in 32-bit halves.
    expect(calls).toEqual([
      [10, 0b101],
      [42, 2 ** 31],
      [5, 0b10001],
      [200, 1],
    ]);
  });

  it('drops entries of a deleted slot or past its end at reset', () => {
    const ring = new KvmDirtyRing(0, 4096, 64);
    ring.push(7, 0);
    ring.push(1, 600);
    ring.setFlags(0, KVM_DIRTY_GFN_F_RESET);
    ring.setFlags(1, KVM_DIRTY_GFN_F_RESET);
    const calls: number[] = [];
    const slot = { npages: 512 } as KvmMemorySlot;
    expect(ring.reset({ nrAsIds: () => 1, idToMemslot: (_a, id) => (id === 1 ? slot : null), enableDirtyLogPtMasked: (_s, off) => calls.push(off) })).toBe(2);
    expect(calls).toEqual([]);
  });

  it('allocates ring pages as they are written', () => {
    const ring = new KvmDirtyRing(0, 1 * MiB, 64);
    expect(ring.allocatedPages).toBe(0);
    ring.push(1, 0);
    expect(ring.allocatedPages).toBe(1);
  });
});

describe('the soft-full exit (KVM_EXIT_DIRTY_RING_FULL)', () => {
  it('a fault that fills the ring to its soft limit stops the access; a reset lets it finish', () => {
    const { vm, vcpu, kvm, hva } = ringVm();
    const fetch = { i: 0 };
    // 191 pages fit below the soft limit (192 = 256 - 64 reserved)
    for (let p = 0; p < 191; p++) expect(vcpu.guestWrite(BASE + p * 0x1000, 8, 1n)).toEqual({});
    const r = vcpu.guestWrite(BASE + 191 * 0x1000, 8, 0xaan);
    expect(r.exit?.reason).toBe('KVM_EXIT_DIRTY_RING_FULL');
    // the entry was pushed, the store has not happened
    expect(vcpu.dirtyRing!.used).toBe(192);
    expect(kvm.process.mm.read(hva + 191 * 0x1000, 8)).toBe(0n);
    // KVM_RUN again without a reset: the same exit
    expect(vcpu.run().exit?.reason).toBe('KVM_EXIT_DIRTY_RING_FULL');
    expect(harvest(vcpu, fetch)).toHaveLength(192);
    expect(vm.resetDirtyRings()).toBe(192);
    // the store runs again: its page was re-protected by the reset, so it is logged again
    expect(vcpu.run()).toEqual({});
    expect(kvm.process.mm.read(hva + 191 * 0x1000, 8)).toBe(0xaan);
    expect(harvest(vcpu, fetch)).toEqual([191]);
    assertVmInvariants(vm);
  });

  it('a new access while the ring is soft-full exits at once', () => {
    const { vcpu } = ringVm();
    for (let p = 0; p < 192; p++) vcpu.guestWrite(BASE + p * 0x1000, 8, 1n);
    expect(vcpu.guestRead(BASE + 0x1000, 8).exit?.reason).toBe('KVM_EXIT_DIRTY_RING_FULL');
  });

  it('where guest accesses are emulated, the store lands first and the exit comes before re-entry', () => {
    const { vm, vcpu } = ringVm({ profile: LINUX_6_18_PVM_PROFILE });
    expect(vm.profile.emulatedGuestAccesses).toBe(true);
    for (let p = 0; p < 191; p++) expect(vcpu.guestWrite(BASE + p * 0x1000, 8, 1n)).toEqual({});
    // emulator_write_phys() pushed the 192nd entry; vcpu_enter_guest() then sees the request
    expect(vcpu.guestWrite(BASE + 191 * 0x1000, 8, 1n).exit?.reason).toBe('KVM_EXIT_DIRTY_RING_FULL');
    const fetch = { i: 0 };
    expect(harvest(vcpu, fetch)).toHaveLength(192);
    expect(vm.resetDirtyRings()).toBe(192);
    expect(vcpu.run()).toEqual({});
    expect(harvest(vcpu, fetch)).toEqual([]);
    assertVmInvariants(vm);
  });

  it('works on the shadow MMU (no TDP)', () => {
    const { vm, vcpu } = ringVm({ profile: UPSTREAM_SHADOW_PROFILE });
    expect(vm.tdpEnabled).toBe(false);
    for (let p = 0; p < 191; p++) expect(vcpu.guestWrite(BASE + p * 0x1000, 8, 1n)).toEqual({});
    expect(vcpu.guestWrite(BASE + 191 * 0x1000, 8, 1n).exit?.reason).toBe('KVM_EXIT_DIRTY_RING_FULL');
    const fetch = { i: 0 };
    expect(harvest(vcpu, fetch)).toHaveLength(192);
    expect(vm.resetDirtyRings()).toBe(192);
    expect(vcpu.run()).toEqual({});
    expect(harvest(vcpu, fetch)).toEqual([191]);
    assertVmInvariants(vm);
  });
});

describe('the dirty ring and the dirty bitmap', () => {
  it('a slot created before the ring keeps its bitmap, but guest writes go to the ring and GET_DIRTY_LOG is ENXIO', () => {
    const kvm = new Kvm();
    const vm = kvm.createVm();
    const hva = kvm.process.mm.mmap({ length: 2 * MiB, prot: { read: true, write: true }, shared: false });
    vm.setUserMemoryRegion2({ slot: 1, flags: KVM_MEM_LOG_DIRTY_PAGES, guest_phys_addr: BASE, memory_size: 2 * MiB, userspace_addr: hva });
    vm.enableCap({ cap: KVM_CAP_DIRTY_LOG_RING, args: [4096] });
    const vcpu = vm.createVcpu(0);
    vcpu.guestWrite(BASE, 8, 1n);
    expect(vcpu.dirtyRing!.used).toBe(1);
    expect(testDirtyBit(vm.memslots.idToMemslot(0, 1)!, BASE >> 12)).toBe(false);
    expect(errnoOf(() => vm.getDirtyLog({ slot: 1 }))).toBe('ENXIO');
  });

  it('with ring + bitmap, slots get bitmaps and KVM_GET_DIRTY_LOG works; vCPU writes still go to the ring', () => {
    const profile = { ...UPSTREAM_PROFILE, name: 'ring-with-bitmap', dirtyRingWithBitmap: true };
    const kvm = new Kvm({ profile });
    const vm = kvm.createVm();
    vm.enableCap({ cap: KVM_CAP_DIRTY_LOG_RING, args: [4096] });
    vm.enableCap({ cap: KVM_CAP_DIRTY_LOG_RING_WITH_BITMAP });
    const hva = kvm.process.mm.mmap({ length: 2 * MiB, prot: { read: true, write: true }, shared: false });
    vm.setUserMemoryRegion2({ slot: 1, flags: KVM_MEM_LOG_DIRTY_PAGES, guest_phys_addr: BASE, memory_size: 2 * MiB, userspace_addr: hva });
    const vcpu = vm.createVcpu(0);
    vcpu.guestWrite(BASE + 0x2000, 8, 1n);
    expect(vcpu.dirtyRing!.used).toBe(1);
    expect(Array.from(vm.getDirtyLog({ slot: 1 })).every((b) => b === 0)).toBe(true);
    // a page dirtied with no running vCPU goes to the bitmap
    vm.markPageDirty(vm.memslots.idToMemslot(0, 1)!, (BASE >> 12) + 5);
    expect(vm.getDirtyLog({ slot: 1 })[0]).toBe(1 << 5);
  });

  it('with a ring on x86, a page dirtied with no running vCPU warns and only a bitmap can take it', () => {
    const kvm = new Kvm();
    const vm = kvm.createVm();
    const trace = recordTrace(vm.tracer);
    const hva = kvm.process.mm.mmap({ length: 2 * MiB, prot: { read: true, write: true }, shared: false });
    vm.setUserMemoryRegion2({ slot: 1, flags: KVM_MEM_LOG_DIRTY_PAGES, guest_phys_addr: BASE, memory_size: 2 * MiB, userspace_addr: hva });
    vm.enableCap({ cap: KVM_CAP_DIRTY_LOG_RING, args: [4096] });
    const vcpu = vm.createVcpu(0);
    const slot = vm.memslots.idToMemslot(0, 1)!;
    vm.markPageDirty(slot, (BASE >> 12) + 2);
    expect(vcpu.dirtyRing!.used).toBe(0);
    expect(testDirtyBit(slot, (BASE >> 12) + 2)).toBe(true);
    expect(trace.events.some((e) => e.name === 'kvm_warn' && e.fields.where === 'mark_page_dirty_in_slot')).toBe(true);
    trace.stop();
  });

  it('the explorer form of an access exits at entry while the ring is soft-full', () => {
    const { vcpu } = ringVm();
    for (let p = 0; p < 192; p++) vcpu.guestWrite(BASE + p * 0x1000, 8, 1n);
    const op = vcpu.beginAccess({ gpa: BASE + 0x1000, size: 8, kind: 'read' });
    while (!op.step());
    expect(op.result().exit?.reason).toBe('KVM_EXIT_DIRTY_RING_FULL');
  });

  it('vCPU mmap: the ring pages must be shared and not executable', () => {
    const { vcpu } = ringVm();
    expect(kvmPageInDirtyRing(4096, 64)).toBe(true);
    expect(kvmPageInDirtyRing(4096, 65)).toBe(false);
    expect(errnoOf(() => vcpu.mmapCheck(64, 1, 0x1, 0x02))).toBe('EINVAL'); // PROT_READ, MAP_PRIVATE
    expect(errnoOf(() => vcpu.mmapCheck(64, 1, 0x1 | 0x4, 0x01))).toBe('EPERM'); // PROT_EXEC: noexec anon inode
    expect(errnoOf(() => vcpu.mmapCheck(64, 1, 0x3, 0x01))).toBeUndefined();
    expect(errnoOf(() => vcpu.mmapCheck(0, 1, 0x1, 0x02))).toBeUndefined(); // kvm_run page: not the ring
  });
});
