import {
  ERRNO,
  FALLOC_FL_KEEP_SIZE,
  FALLOC_FL_PUNCH_HOLE,
  GUEST_MEMFD_FLAG_INIT_SHARED,
  GUEST_MEMFD_FLAG_MMAP,
  KVM_CAP_GUEST_MEMFD,
  KVM_CAP_GUEST_MEMFD_FLAGS,
  KVM_FILTER_PRIVATE,
  KVM_FILTER_SHARED,
  KVM_X86_SNP_VM,
  KVM_X86_SW_PROTECTED_VM,
  KVM_X86_TDX_VM,
  PAGE_SIZE,
  LINUX_6_18_PROFILE,
  UPSTREAM_PROFILE,
} from '@ccmem/core';
import type { GmemPfn } from '@ccmem/core';
import { describe, expect, it } from 'vitest';
import { GuestMemfd, guestMemfdCapability, guestMemfdFactory } from './guest-memfd.js';
import { InvalidateLockBusyError } from './invalidate-lock.js';
import { PAGE_HWPOISON, PAGE_PREPARED, PAGE_UPTODATE } from './page-store.js';
import { FakeVm, bindSlot, fakeSlot } from './testing/fake-vm.js';
import { runProviderConformance } from './testing/index.js';
import { errnoOf, kvmErrorOf } from '../../core/src/testing/errno-of.js';

const KEEP = FALLOC_FL_KEEP_SIZE;
const PUNCH = FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE;
const MMAP = GUEST_MEMFD_FLAG_MMAP;
const INIT_SHARED = GUEST_MEMFD_FLAG_INIT_SHARED;

const pfnOut = (): GmemPfn => ({ pfn: -1, maxOrder: -1 });

function snpVm(extra: Partial<ConstructorParameters<typeof FakeVm>[0]> = {}) {
  return new FakeVm({ vmType: KVM_X86_SNP_VM, hasPrivateMem: true, withBackend: true, ...extra });
}
function gmem(vm: FakeVm, pages = 4, flags = 0): GuestMemfd {
  return guestMemfdFactory.create(vm, { size: pages * PAGE_SIZE, flags });
}

runProviderConformance('guest_memfd', (vm) => {
  const file = gmem(vm, 8);
  return {
    vm,
    file,
    npages: 8,
    extraOffsets: [4 * PAGE_SIZE, 7 * PAGE_SIZE],
    remove: (pgoff, n) => void file.fallocate(PUNCH, pgoff * PAGE_SIZE, n * PAGE_SIZE),
    kill: () => file.release(),
  };
});

describe('KVM_CREATE_GUEST_MEMFD (§6.1)', () => {
  it('supported flags: MMAP|INIT_SHARED on the default VM, MMAP only on VMs with private memory', () => {
    expect(guestMemfdFactory.supportedFlags(new FakeVm())).toBe(MMAP | INIT_SHARED);
    for (const vmType of [KVM_X86_SW_PROTECTED_VM, KVM_X86_SNP_VM, KVM_X86_TDX_VM]) {
      expect(guestMemfdFactory.supportedFlags(new FakeVm({ vmType, hasPrivateMem: true, withBackend: true }))).toBe(MMAP);
    }
  });

  it('a profile whose default VM has no gmem flags (pre-mmap kernel) offers none on any VM', () => {
    const old = { ...UPSTREAM_PROFILE, name: 'old', gmemFlagsDefaultVm: 0 };
    expect(guestMemfdFactory.supportedFlags(new FakeVm({ profile: old }))).toBe(0);
    expect(guestMemfdFactory.supportedFlags(snpVm({ profile: old }))).toBe(0);
  });

  it('KVM_CAP_GUEST_MEMFD is 1 and KVM_CAP_GUEST_MEMFD_FLAGS is the per-VM mask (all flags on /dev/kvm)', () => {
    expect(guestMemfdCapability(KVM_CAP_GUEST_MEMFD, snpVm(), UPSTREAM_PROFILE)).toBe(1);
    expect(guestMemfdCapability(KVM_CAP_GUEST_MEMFD_FLAGS, snpVm(), UPSTREAM_PROFILE)).toBe(MMAP);
    expect(guestMemfdCapability(KVM_CAP_GUEST_MEMFD_FLAGS, new FakeVm(), UPSTREAM_PROFILE)).toBe(MMAP | INIT_SHARED);
    expect(guestMemfdCapability(KVM_CAP_GUEST_MEMFD_FLAGS, null, UPSTREAM_PROFILE)).toBe(MMAP | INIT_SHARED);
    expect(guestMemfdCapability(1, null, UPSTREAM_PROFILE)).toBeUndefined();
  });

  // §9.2 item 1, for the default VM and a CoCo VM
  for (const [label, mk] of [
    ['default VM', () => new FakeVm()],
    ['SNP VM', () => snpVm()],
  ] as const) {
    it(`every single-bit flag 1<<0..1<<63 is accepted iff it is in KVM_CAP_GUEST_MEMFD_FLAGS (${label})`, () => {
      const vm = mk();
      const supported = guestMemfdCapability(KVM_CAP_GUEST_MEMFD_FLAGS, vm, vm.profile)!;
      for (let bit = 0; bit < 64; bit++) {
        const flag = 2 ** bit;
        const inMask = bit < 32 && (supported & flag) !== 0;
        const err = errnoOf(() => guestMemfdFactory.create(vm, { size: PAGE_SIZE, flags: flag }));
        expect(err, `bit ${bit}`).toBe(inMask ? undefined : 'EINVAL');
      }
    });
  }

  it('§9.2 item 2: every size 1..4095 is EINVAL; 0, negative and >= 2^63 too', () => {
    const vm = new FakeVm();
    for (let size = 1; size < PAGE_SIZE; size++) expect(errnoOf(() => gmem(vm, size / PAGE_SIZE))).toBe('EINVAL');
    for (const size of [0, -PAGE_SIZE, 2 ** 63, PAGE_SIZE + 1]) {
      expect(errnoOf(() => guestMemfdFactory.create(vm, { size, flags: 0 }))).toBe('EINVAL');
    }
  });

  it('checks flags before size and creates nothing on failure', () => {
    const vm = snpVm();
    const e = kvmErrorOf(() => guestMemfdFactory.create(vm, { size: 1, flags: INIT_SHARED }));
    expect(e?.check).toMatch(/flags/);
    expect(kvmErrorOf(() => guestMemfdFactory.create(vm, { size: 1, flags: MMAP }))?.check).toMatch(/size/);
    expect(vm.refs).toBe(1);
  });

  it('§9.2 item 3: two files have their own sizes and inode numbers; each holds a VM reference', () => {
    const vm = new FakeVm();
    const a = gmem(vm, 1);
    const b = gmem(vm, 2);
    expect(a.fstat().st_size).toBe(4096);
    expect(b.fstat().st_size).toBe(8192);
    expect(a.fstat().st_ino).not.toBe(b.fstat().st_ino);
    expect(vm.refs).toBe(3);
    expect(a.kind).toBe('kvm-gmem');
    expect(a.ownerVm).toBe(vm);
  });

  it('gmemOnly is set by GUEST_MEMFD_FLAG_MMAP', () => {
    const vm = new FakeVm();
    expect(gmem(vm, 1, MMAP).gmemOnly).toBe(true);
    expect(gmem(vm, 1, 0).gmemOnly).toBe(false);
  });
});

describe('file operations (§6.2, §9.2 items 4-12)', () => {
  const total = 4 * PAGE_SIZE;

  it('4: read, write, pread, pwrite all fail', () => {
    const f = gmem(new FakeVm());
    for (const op of [() => f.read(), () => f.write()]) expect(errnoOf(op)).toBe('EINVAL');
    // no FMODE_PREAD / FMODE_PWRITE on a pseudo file: ksys_pread64() / ksys_pwrite64()
    for (const op of [() => f.pread(), () => f.pwrite()]) expect(errnoOf(op)).toBe('ESPIPE');
  });

  it('5: fstat reports i_size and PAGE_SIZE blocks; ftruncate is EINVAL and leaves the size', () => {
    const f = gmem(new FakeVm());
    expect(f.fstat()).toMatchObject({ st_size: total, st_blksize: 4096 });
    expect(errnoOf(() => f.ftruncate(8 * PAGE_SIZE))).toBe('EINVAL');
    expect(f.fstat().st_size).toBe(total);
  });

  it('6-12: the fallocate sequence of guest_memfd_test.c', () => {
    const f = gmem(new FakeVm());
    expect(f.fallocate(KEEP, 0, total)).toBe(0); // 6
    expect(f.stats.allocatedPages).toBe(4);
    expect(errnoOf(() => f.fallocate(PUNCH, PAGE_SIZE - 1, PAGE_SIZE))).toBe('EINVAL'); // 7
    expect(errnoOf(() => f.fallocate(KEEP, total, PAGE_SIZE))).toBe('EINVAL'); // 8
    expect(errnoOf(() => f.fallocate(KEEP, total + PAGE_SIZE, PAGE_SIZE))).toBe('EINVAL');
    expect(f.fallocate(PUNCH, total, PAGE_SIZE)).toBe(0); // 9
    expect(f.fallocate(PUNCH, total + PAGE_SIZE, PAGE_SIZE)).toBe(0);
    expect(errnoOf(() => f.fallocate(PUNCH, PAGE_SIZE, PAGE_SIZE - 1))).toBe('EINVAL'); // 10
    expect(f.fallocate(PUNCH, PAGE_SIZE, PAGE_SIZE)).toBe(0); // 11
    expect(f.pfnAt(1)).toBe(-1);
    expect(f.stats.allocatedPages).toBe(3);
    expect(f.fallocate(KEEP, PAGE_SIZE, PAGE_SIZE)).toBe(0);
    expect(f.pfnAt(1)).toBeGreaterThan(0);
    for (const [off, len] of [
      [0, 1], [0, 4095], [0, 4097], [1, 1], [1, 4095], [1, 4096], [1, 4097], [4096, 1], [4096, 4095], [4096, 4097],
    ] as const) {
      expect(errnoOf(() => f.fallocate(PUNCH, off, len)), `${off},${len}`).toBe('EINVAL'); // 12
    }
    expect(f.stats.allocatedPages).toBe(4);
  });

  it('fallocate checks in order: offset/len, KEEP_SIZE, other mode bits, alignment, then EOF', () => {
    const f = gmem(new FakeVm());
    expect(kvmErrorOf(() => f.fallocate(0x40, -1, 1))?.check).toMatch(/vfs_fallocate/);
    expect(kvmErrorOf(() => f.fallocate(PUNCH, 0, 0))?.code).toBe('EINVAL');
    expect(errnoOf(() => f.fallocate(FALLOC_FL_PUNCH_HOLE, 1, 1))).toBe('EOPNOTSUPP');
    expect(errnoOf(() => f.fallocate(0, 1, 1))).toBe('EOPNOTSUPP');
    expect(errnoOf(() => f.fallocate(KEEP | 0x10, 1, 1))).toBe('EOPNOTSUPP');
    expect(errnoOf(() => f.fallocate(KEEP + 2 ** 31, 0, PAGE_SIZE))).toBe('EOPNOTSUPP');
    expect(kvmErrorOf(() => f.fallocate(KEEP, 1, total * 2))?.check).toMatch(/aligned/);
    expect(kvmErrorOf(() => f.fallocate(KEEP, 0, total * 2))?.check).toMatch(/i_size/);
    expect(f.stats.allocatedPages).toBe(0);
  });

  it('vfs_fallocate(): offset + len beyond loff_t is EFBIG, after the mode checks and before kvm_gmem_fallocate()', () => {
    const f = gmem(new FakeVm());
    const top = 2 ** 63 - PAGE_SIZE;
    expect(kvmErrorOf(() => f.fallocate(PUNCH, top, PAGE_SIZE))?.code).toBe('EFBIG');
    expect(kvmErrorOf(() => f.fallocate(PUNCH, top, PAGE_SIZE))?.check).toMatch(/vfs_fallocate/);
    // mode 0 (no KEEP_SIZE) is kvm_gmem_fallocate()'s EOPNOTSUPP, which runs after the overflow check
    expect(errnoOf(() => f.fallocate(0, top, 2 * PAGE_SIZE))).toBe('EFBIG');
    // vfs_fallocate()'s own mode checks come first
    expect(errnoOf(() => f.fallocate(KEEP | 0x100, top, 2 * PAGE_SIZE))).toBe('EOPNOTSUPP');
    expect(errnoOf(() => f.fallocate(FALLOC_FL_PUNCH_HOLE, top, 2 * PAGE_SIZE))).toBe('EOPNOTSUPP');
    expect(errnoOf(() => f.fallocate(KEEP | FALLOC_FL_PUNCH_HOLE | 0x10, top, 2 * PAGE_SIZE))).toBe('EOPNOTSUPP');
    // the largest sum that fits is kvm_gmem's business (a punch beyond EOF is a no-op)
    expect(f.fallocate(PUNCH, top - PAGE_SIZE, PAGE_SIZE)).toBe(0);
    expect(errnoOf(() => f.beginPunchHole(top, PAGE_SIZE))).toBe('EFBIG');
  });

  it('allocation leaves pages not up to date; the first lookup zeroes stale contents', () => {
    const vm = snpVm();
    const f = gmem(vm);
    f.fallocate(KEEP, 0, PAGE_SIZE);
    const pfn = f.pfnAt(0);
    expect(f.pageFlags(0) & PAGE_UPTODATE).toBe(0);
    vm.phys.writeBytes(pfn, 0, new Uint8Array([1, 2, 3])); // host data left in the frame
    const s = bindSlot({ id: 1, baseGfn: 0x10, npages: 4, file: f });
    const out = pfnOut();
    expect(f.getPfn(s, 0x10, out)).toBe(0);
    expect(out.pfn).toBe(pfn);
    expect(vm.phys.readBytes(pfn, 0, 3)).toEqual(new Uint8Array(3));
    expect(f.pageFlags(0) & PAGE_UPTODATE).toBe(PAGE_UPTODATE);
  });
});

describe('mmap (§6.2, §9.2 items 13-17)', () => {
  it('13: without GUEST_MEMFD_FLAG_MMAP every mmap is ENODEV', () => {
    const f = gmem(new FakeVm());
    expect(f.checkMmap(true)).toBe('ENODEV');
    expect(f.checkMmap(false)).toBe('ENODEV');
  });

  it('14: with MMAP, MAP_PRIVATE is EINVAL and MAP_SHARED is allowed', () => {
    const f = gmem(snpVm(), 4, MMAP);
    expect(f.checkMmap(false)).toBe('EINVAL');
    expect(f.checkMmap(true)).toBeNull();
  });

  it('15: INIT_SHARED: written data reads back; a punched page refaults as zeros', () => {
    const vm = new FakeVm();
    const f = gmem(vm, 4, MMAP | INIT_SHARED);
    const fill = new Uint8Array(PAGE_SIZE).fill(0xaa);
    for (let i = 0; i < 4; i++) vm.phys.writeBytes(f.faultPage(i, true) as number, 0, fill);
    for (let i = 0; i < 4; i++) expect(vm.phys.readBytes(f.faultPage(i, false) as number, 0, PAGE_SIZE)).toEqual(fill);
    f.fallocate(PUNCH, 0, PAGE_SIZE);
    expect(vm.phys.readBytes(f.faultPage(0, false) as number, 0, PAGE_SIZE)).toEqual(new Uint8Array(PAGE_SIZE));
    for (let i = 1; i < 4; i++) expect(vm.phys.readBytes(f.faultPage(i, false) as number, 0, PAGE_SIZE)).toEqual(fill);
    vm.phys.writeBytes(f.faultPage(0, true) as number, 0, fill);
    expect(vm.phys.readBytes(f.faultPage(0, false) as number, 0, PAGE_SIZE)).toEqual(fill);
  });

  it('16: INIT_SHARED: any page at or beyond i_size is SIGBUS, pages below still hold data', () => {
    const vm = new FakeVm();
    const f = gmem(vm, 4, MMAP | INIT_SHARED);
    vm.phys.writeBytes(f.faultPage(3, true) as number, 4095, new Uint8Array([0xaa]));
    for (let pg = 4; pg < 16; pg++) expect(f.faultPage(pg, true)).toBe('SIGBUS');
    expect(vm.phys.readBytes(f.faultPage(3, false) as number, 4095, 1)[0]).toBe(0xaa);
  });

  it('17: MMAP without INIT_SHARED: the memory is private and every host access is SIGBUS', () => {
    const vm = snpVm();
    const f = gmem(vm, 4, MMAP);
    expect(f.faultPage(0, true)).toBe('SIGBUS');
    expect(f.faultPage(0, false)).toBe('SIGBUS');
  });

  it('private contents never reach the VMM: pages the guest faulted in are SIGBUS through any mapping', () => {
    const vm = snpVm();
    const f = gmem(vm, 4, MMAP);
    const s = bindSlot({ id: 1, baseGfn: 0, npages: 4, file: f });
    for (let g = 0; g < 4; g++) {
      const out = pfnOut();
      expect(f.getPfn(s, g, out)).toBe(0);
      vm.phys.writeBytes(out.pfn, 0, new Uint8Array([0x5a]));
      expect(f.faultPage(g, false)).toBe('SIGBUS');
    }
  });

  it('a poisoned shared page is SIGBUS for the host', () => {
    const vm = new FakeVm();
    const f = gmem(vm, 2, MMAP | INIT_SHARED);
    f.faultPage(1, true);
    expect(f.poison(1)).toBe(true);
    expect(f.faultPage(1, false)).toBe('SIGBUS');
  });
});

describe('binding (§2.4 step 17 d/e)', () => {
  it('offset checks: negative, unaligned, past i_size → EINVAL; exact fit is fine', () => {
    const f = gmem(snpVm(), 4);
    const slot = (npages: number) => fakeSlot({ id: 1, baseGfn: 0, npages, file: f });
    expect(errnoOf(() => f.bind(slot(1), -PAGE_SIZE))).toBe('EINVAL');
    expect(errnoOf(() => f.bind(slot(1), 2 ** 63))).toBe('EINVAL'); // negative as loff_t
    expect(errnoOf(() => f.bind(slot(1), 512))).toBe('EINVAL');
    expect(errnoOf(() => f.bind(slot(2), 3 * PAGE_SIZE))).toBe('EINVAL');
    expect(errnoOf(() => f.bind(slot(1), 3 * PAGE_SIZE))).toBeUndefined();
  });

  it('each page is bound to at most one slot; adjacent ranges are fine', () => {
    for (const profile of [UPSTREAM_PROFILE, LINUX_6_18_PROFILE]) {
      const f = gmem(snpVm({ profile }), 8);
      bindSlot({ id: 1, baseGfn: 0, npages: 2, file: f, offset: 2 * PAGE_SIZE });
      expect(errnoOf(() => bindSlot({ id: 2, baseGfn: 0x10, npages: 2, file: f, offset: 0 }))).toBeUndefined();
      expect(errnoOf(() => bindSlot({ id: 3, baseGfn: 0x20, npages: 2, file: f, offset: 3 * PAGE_SIZE }))).toBe(profile.gmemBindOverlapErrno);
      expect(errnoOf(() => bindSlot({ id: 4, baseGfn: 0x30, npages: 8, file: f, offset: 0 }))).toBe(profile.gmemBindOverlapErrno);
      expect(errnoOf(() => bindSlot({ id: 5, baseGfn: 0x40, npages: 4, file: f, offset: 4 * PAGE_SIZE }))).toBeUndefined();
      expect(f.stats.bindings).toBe(3);
    }
  });

  it('slots in different address spaces with the same id are different bindings', () => {
    const f = gmem(new FakeVm(), 4);
    const a = bindSlot({ id: 1, asId: 0, baseGfn: 0, npages: 2, file: f });
    const b = bindSlot({ id: 1, asId: 1, baseGfn: 0, npages: 2, file: f, offset: 2 * PAGE_SIZE });
    const oa = pfnOut();
    const ob = pfnOut();
    expect(f.getPfn(a, 0, oa)).toBe(0);
    expect(f.getPfn(b, 0, ob)).toBe(0);
    expect(oa.pfn).not.toBe(ob.pfn);
    expect(f.getPfn(a, 2, pfnOut())).toBe(-ERRNO.EIO); // gfn 2 is past slot a: index 2 belongs to b
  });
});

describe('kvm_gmem_get_pfn (§6.5)', () => {
  it('errors in order: EFAULT (closed) before EIO before EHWPOISON', () => {
    const vm = snpVm();
    const f = gmem(vm, 4);
    const s = bindSlot({ id: 1, baseGfn: 0x100, npages: 2, file: f });
    bindSlot({ id: 2, baseGfn: 0x200, npages: 2, file: f, offset: 2 * PAGE_SIZE });
    expect(f.getPfn(s, 0x100, pfnOut())).toBe(0);
    expect(f.poison(0)).toBe(true);
    expect(f.getPfn(s, 0x100, pfnOut())).toBe(-ERRNO.EHWPOISON);
    // a slot view whose pgoff points into slot 2's pages: EIO even though index 2 exists
    const skewed = { ...s, gmemPgoff: 2 };
    expect(f.getPfn(skewed, 0x100, pfnOut())).toBe(-ERRNO.EIO);
    f.release();
    expect(f.getPfn(s, 0x100, pfnOut())).toBe(-ERRNO.EFAULT);
    expect(f.getPfn(skewed, 0x100, pfnOut())).toBe(-ERRNO.EFAULT);
  });

  it('allocates on a hole, returns max_order 0, and calls gmem_prepare on every lookup', () => {
    const vm = snpVm();
    const f = gmem(vm, 4);
    const s = bindSlot({ id: 1, baseGfn: 0x100, npages: 4, file: f, offset: 0 });
    vm.clearCalls();
    const out = pfnOut();
    expect(f.getPfn(s, 0x102, out)).toBe(0);
    expect(out.maxOrder).toBe(0);
    expect(f.pfnAt(2)).toBe(out.pfn);
    expect(f.getPfn(s, 0x102, pfnOut())).toBe(0);
    expect(vm.calls).toEqual([
      { op: 'prepare', pfn: out.pfn, gfn: 0x102, order: 0 },
      { op: 'prepare', pfn: out.pfn, gfn: 0x102, order: 0 },
    ]);
    expect(f.pageFlags(2) & PAGE_PREPARED).toBe(PAGE_PREPARED);
  });

  it('a prepare failure is returned; the page stays in the file, zeroed but not prepared', () => {
    const vm = snpVm();
    const f = gmem(vm, 1);
    const s = bindSlot({ id: 1, baseGfn: 0, npages: 1, file: f });
    vm.prepareResult = -ERRNO.EBUSY;
    expect(f.getPfn(s, 0, pfnOut())).toBe(-ERRNO.EBUSY);
    expect(f.pageFlags(0)).toBe(PAGE_UPTODATE);
    vm.prepareResult = 0;
    expect(f.getPfn(s, 0, pfnOut())).toBe(0);
  });

  it('without a vendor backend no prepare runs', () => {
    const vm = new FakeVm();
    const f = gmem(vm, 1);
    const s = bindSlot({ id: 1, baseGfn: 0, npages: 1, file: f });
    vm.clearCalls();
    expect(f.getPfn(s, 0, pfnOut())).toBe(0);
    expect(vm.calls).toEqual([]);
  });
});

describe('PUNCH_HOLE (§6.3)', () => {
  function populated(flags = 0, vm = snpVm()) {
    const f = gmem(vm, 8, flags);
    const s = bindSlot({ id: 1, baseGfn: 0x1000, npages: 8, file: f });
    const pfns: number[] = [];
    for (let i = 0; i < 8; i++) {
      const out = pfnOut();
      expect(f.getPfn(s, 0x1000 + i, out)).toBe(0);
      vm.phys.writeBytes(out.pfn, 0, new Uint8Array([0xcc]));
      pfns.push(out.pfn);
    }
    vm.clearCalls();
    return { vm, f, s, pfns };
  }

  it('begin → unmap(PRIVATE) → per page arch invalidate + free → end; the refault is a new zeroed page', () => {
    const { vm, f, s, pfns } = populated();
    f.fallocate(PUNCH, 2 * PAGE_SIZE, 2 * PAGE_SIZE);
    expect(vm.calls).toEqual([
      { op: 'begin' },
      { op: 'unmap', start: 0x1002, end: 0x1004, filter: KVM_FILTER_PRIVATE },
      { op: 'invalidate', start: pfns[2], end: pfns[2]! + 1 },
      { op: 'free', pfn: pfns[2] },
      { op: 'invalidate', start: pfns[3], end: pfns[3]! + 1 },
      { op: 'free', pfn: pfns[3] },
      { op: 'end' },
    ]);
    expect(vm.mmuInvalidateSeq).toBe(1);
    const out = pfnOut();
    expect(f.getPfn(s, 0x1002, out)).toBe(0);
    expect(vm.phys.readBytes(out.pfn, 0, 1)[0]).toBe(0);
    expect(f.getPfn(s, 0x1001, out)).toBe(0);
    expect(out.pfn).toBe(pfns[1]);
    expect(vm.phys.readBytes(out.pfn, 0, 1)[0]).toBe(0xcc);
  });

  it('an INIT_SHARED file zaps with the SHARED filter', () => {
    const vm = new FakeVm();
    const f = gmem(vm, 2, MMAP | INIT_SHARED);
    bindSlot({ id: 1, baseGfn: 0, npages: 2, file: f });
    vm.clearCalls();
    f.fallocate(PUNCH, 0, PAGE_SIZE);
    expect(vm.calls[1]).toEqual({ op: 'unmap', start: 0, end: 1, filter: KVM_FILTER_SHARED });
  });

  it('one begin/end around the unmaps of every slot bound in the hole', () => {
    const vm = snpVm();
    const f = gmem(vm, 8);
    bindSlot({ id: 1, baseGfn: 0x100, npages: 4, file: f });
    bindSlot({ id: 2, baseGfn: 0x900, npages: 4, file: f, offset: 4 * PAGE_SIZE });
    vm.clearCalls();
    f.fallocate(PUNCH, 2 * PAGE_SIZE, 4 * PAGE_SIZE);
    expect(vm.calls).toEqual([
      { op: 'begin' },
      { op: 'unmap', start: 0x102, end: 0x104, filter: KVM_FILTER_PRIVATE },
      { op: 'unmap', start: 0x900, end: 0x902, filter: KVM_FILTER_PRIVATE },
      { op: 'end' },
    ]);
  });

  it('a hole with no binding frees pages without touching the MMU', () => {
    const vm = snpVm();
    const f = gmem(vm, 4);
    f.fallocate(KEEP, 0, 4 * PAGE_SIZE);
    // fallocate reserves; the pages get frames on first use (here: inspection)
    for (let p = 0; p < 4; p++) expect(f.pfnAt(p)).toBeGreaterThanOrEqual(0);
    bindSlot({ id: 1, baseGfn: 0, npages: 2, file: f });
    vm.clearCalls();
    f.fallocate(PUNCH, 2 * PAGE_SIZE, 2 * PAGE_SIZE);
    expect(vm.calls.map((c) => c.op)).toEqual(['invalidate', 'free', 'invalidate', 'free']);
    expect(vm.mmuInvalidateSeq).toBe(0);
  });

  it('resumable: faults between the phases see the old page, then a fresh one; other takers of the lock are refused', () => {
    const { vm, f, s, pfns } = populated();
    const op = f.beginPunchHole(0, PAGE_SIZE);
    expect(op.phase).toBe('invalidate');
    expect(op.step()).toBe(true);
    expect(op.phase).toBe('truncate');
    expect(vm.mmuInvalidateInProgress).toBe(1);
    const out = pfnOut();
    expect(f.getPfn(s, 0x1000, out)).toBe(0);
    expect(out.pfn).toBe(pfns[0]); // the MMU's retry check keeps this from being installed
    expect(() => bindSlot({ id: 9, baseGfn: 0, npages: 1, file: f })).toThrow(InvalidateLockBusyError);
    expect(() => f.fallocate(KEEP, 0, PAGE_SIZE)).toThrow(InvalidateLockBusyError);
    expect(op.step()).toBe(true);
    expect(op.phase).toBe('end');
    expect(f.pfnAt(0)).toBe(-1);
    expect(f.getPfn(s, 0x1000, out)).toBe(0);
    expect(vm.phys.readBytes(out.pfn, 0, 1)[0]).toBe(0);
    expect(op.step()).toBe(false);
    expect(op.phase).toBe('done');
    expect(vm.mmuInvalidateInProgress).toBe(0);
    expect(op.step()).toBe(false);
    expect(() => f.fallocate(KEEP, 0, PAGE_SIZE)).not.toThrow();
  });

  it('beginPunchHole runs the fallocate checks and takes nothing on failure', () => {
    const f = gmem(snpVm(), 2);
    expect(errnoOf(() => f.beginPunchHole(1, PAGE_SIZE))).toBe('EINVAL');
    expect(() => f.fallocate(KEEP, 0, PAGE_SIZE)).not.toThrow();
  });

  it('a 1 TiB file costs memory only for allocated pages; a whole-file punch touches only those', () => {
    const vm = snpVm();
    const size = 2 ** 40;
    const f = guestMemfdFactory.create(vm, { size, flags: 0 });
    const s = bindSlot({ id: 1, baseGfn: 0, npages: size / PAGE_SIZE, file: f });
    for (const g of [0, 12345, 2 ** 27, size / PAGE_SIZE - 1]) expect(f.getPfn(s, g, pfnOut())).toBe(0);
    expect(f.stats.allocatedPages).toBe(4);
    f.fallocate(PUNCH, 0, size);
    expect(f.stats.allocatedPages).toBe(0);
    expect(vm.phys.allocatedPages).toBe(0);
  });
});

describe('memory failure', () => {
  it('poison zaps the page without freeing it; lookups get EHWPOISON; a punch leaks the frame', () => {
    const vm = snpVm();
    const f = gmem(vm, 2);
    const s = bindSlot({ id: 1, baseGfn: 0x40, npages: 2, file: f });
    const out = pfnOut();
    f.getPfn(s, 0x41, out);
    vm.clearCalls();
    expect(f.poison(1)).toBe(true);
    expect(vm.calls).toEqual([{ op: 'begin' }, { op: 'unmap', start: 0x41, end: 0x42, filter: KVM_FILTER_PRIVATE }, { op: 'end' }]);
    expect(f.pageFlags(1) & PAGE_HWPOISON).toBe(PAGE_HWPOISON);
    expect(f.stats.poisonedPages).toBe(1);
    expect(f.getPfn(s, 0x41, pfnOut())).toBe(-ERRNO.EHWPOISON);
    expect(f.poison(0)).toBe(false); // a hole has no frame to fail
    vm.clearCalls();
    f.fallocate(PUNCH, PAGE_SIZE, PAGE_SIZE);
    expect(vm.calls).toContainEqual({ op: 'leak', pfn: out.pfn });
    expect(vm.phys.isLeaked(out.pfn)).toBe(true);
    expect(f.stats.poisonedPages).toBe(0);
    expect(f.getPfn(s, 0x41, pfnOut())).toBe(0);
  });
});

describe('close (§6.4)', () => {
  it('zaps every binding, the slots then get EFAULT, the VM ref is dropped, then the inode frees its pages', () => {
    const vm = snpVm();
    const f = gmem(vm, 4);
    const a = bindSlot({ id: 1, baseGfn: 0x100, npages: 2, file: f });
    const b = bindSlot({ id: 2, baseGfn: 0x800, npages: 2, file: f, offset: 2 * PAGE_SIZE });
    const out = pfnOut();
    f.getPfn(a, 0x100, out);
    vm.clearCalls();
    f.release();
    expect(f.live).toBe(false);
    expect(vm.calls).toEqual([
      { op: 'begin' },
      { op: 'unmap', start: 0x100, end: 0x102, filter: KVM_FILTER_PRIVATE },
      { op: 'unmap', start: 0x800, end: 0x802, filter: KVM_FILTER_PRIVATE },
      { op: 'end' },
      { op: 'put' },
      { op: 'invalidate', start: out.pfn, end: out.pfn + 1 },
      { op: 'free', pfn: out.pfn },
    ]);
    expect(vm.refs).toBe(1);
    expect(f.getPfn(a, 0x100, pfnOut())).toBe(-ERRNO.EFAULT);
    expect(f.getPfn(b, 0x800, pfnOut())).toBe(-ERRNO.EFAULT);
    expect(errnoOf(() => bindSlot({ id: 3, baseGfn: 0, npages: 1, file: f }))).toBe('EBADF');
    expect(() => f.unbind(a)).not.toThrow(); // deleting the slot later is fine
    expect(() => f.release()).toThrow();
  });

  it('the file keeps the VM alive: after the VM fd is gone, punch and allocate still work (§9.4)', () => {
    const vm = snpVm();
    const f = gmem(vm, 4);
    vm.put(); // the VM fd is closed
    expect(vm.refs).toBe(1);
    expect(f.fallocate(PUNCH, 0, 4 * PAGE_SIZE)).toBe(0);
    expect(f.fallocate(KEEP, 0, 4 * PAGE_SIZE)).toBe(0);
    f.release();
    expect(vm.refs).toBe(0);
  });

  it('a mapping holds the file: close defers the release until the last munmap', () => {
    const vm = new FakeVm();
    const f = gmem(vm, 2, MMAP | INIT_SHARED);
    const s = bindSlot({ id: 1, baseGfn: 0, npages: 2, file: f });
    const pfn = f.faultPage(0, true) as number;
    f.vmaOpen();
    f.release();
    expect(f.live).toBe(true);
    expect(f.getPfn(s, 0, pfnOut())).toBe(0);
    expect(f.faultPage(0, false)).toBe(pfn);
    f.vmaClose();
    expect(f.live).toBe(false);
    expect(vm.phys.isAllocated(pfn)).toBe(false);
    expect(f.getPfn(s, 0, pfnOut())).toBe(-ERRNO.EFAULT);
  });

  it('releasing during a resumable punch would block', () => {
    const f = gmem(snpVm(), 2);
    const op = f.beginPunchHole(0, PAGE_SIZE);
    op.step();
    expect(() => f.release()).toThrow(InvalidateLockBusyError);
  });
});
