/**
 * guest_memfd rules that need a closer look than the flows in guest-memfd.test.ts: which check
 * rejects a call (KvmError.check names it), the trace each operation leaves, allocation
 * failures of the host, the 2 MiB folio bookkeeping, and the NUMA policy of new folios.
 * Kernel references: virt/kvm/guest_memfd.c, fs/open.c (vfs_fallocate).
 */
import {
  ERRNO,
  FALLOC_FL_KEEP_SIZE,
  FALLOC_FL_PUNCH_HOLE,
  GUEST_MEMFD_FLAG_HUGETLB,
  GUEST_MEMFD_FLAG_INIT_SHARED,
  GUEST_MEMFD_FLAG_MMAP,
  GUESTMEM_HUGETLB_FLAG_2MB,
  KVM_FILTER_SHARED,
  KVM_X86_SEV_ES_VM,
  KVM_X86_SEV_VM,
  KVM_X86_SNP_VM,
  KVM_X86_TDX_VM,
  MPOL_BIND,
  MPOL_INTERLEAVE,
  PAGE_SIZE,
  UPSTREAM_PROFILE,
} from '@ccmem/core';
import type { GmemPfn, GmemPopulateRequest, MemslotView } from '@ccmem/core';
import { describe, expect, it } from 'vitest';
import { guestMemfdFactory, hasBitsOutside } from './guest-memfd.js';
import { InvalidateLockBusyError } from './invalidate-lock.js';
import { PAGE_HWPOISON, PAGE_PREPARED, PAGE_UPTODATE } from './page-store.js';
import { FakeVm, bindSlot, fakeSlot } from './testing/fake-vm.js';
import type { FakeVmOptions } from './testing/fake-vm.js';
import { failureOf } from '../../core/src/testing/errno-of.js';

const KEEP = FALLOC_FL_KEEP_SIZE;
const PUNCH = FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE;
const MMAP = GUEST_MEMFD_FLAG_MMAP;
const INIT_SHARED = GUEST_MEMFD_FLAG_INIT_SHARED;
const HUGE = GUEST_MEMFD_FLAG_HUGETLB | GUESTMEM_HUGETLB_FLAG_2MB;
const HPAGE = 512;
const LOFF_NEGATIVE = 2 ** 63;
/* include/uapi/linux/falloc.h */
const COLLAPSE = 0x08;
const ZERO = 0x10;
const INSERT = 0x20;
const UNSHARE = 0x40;
const WRITE_ZEROES = 0x80;

const pfnOut = (): GmemPfn => ({ pfn: -1, maxOrder: -1 });
const snpVm = (extra: FakeVmOptions = {}) => new FakeVm({ vmType: KVM_X86_SNP_VM, hasPrivateMem: true, withBackend: true, ...extra });
const gmem = (vm: FakeVm, pages = 4, flags = 0) => guestMemfdFactory.create(vm, { size: pages * PAGE_SIZE, flags });
const events = (vm: FakeVm, name: string) => vm.events.filter((e) => e.name === name).map((e) => e.fields);

/** a populate request as the core builds it (every gfn private, every source page pinned) */
function populateReq(slot: MemslotView, startGfn: number, npages: number, extra: Partial<GmemPopulateRequest> = {}): GmemPopulateRequest {
  return {
    slot,
    startGfn,
    npages,
    src: null,
    postPopulate: () => 0,
    getSrcPage: () => new Uint8Array(PAGE_SIZE),
    isPrivate: () => true,
    ...extra,
  };
}

describe('hasBitsOutside (u64 flag words)', () => {
  it('a negative, fractional or above-32-bit value always has unknown bits', () => {
    expect(hasBitsOutside(-1, 0xffffffff)).toBe(true);
    expect(hasBitsOutside(1.5, 0xffffffff)).toBe(true);
    expect(hasBitsOutside(2 ** 32, 0xffffffff)).toBe(true);
    expect(hasBitsOutside(0xffffffff, 0xffffffff)).toBe(false);
    expect(hasBitsOutside(0, 0)).toBe(false);
    expect(hasBitsOutside(0x10, 0x0f)).toBe(true);
  });

  it('KVM_CREATE_GUEST_MEMFD with flags -1 or 2^63 is EINVAL (flags is a u64)', () => {
    const vm = new FakeVm();
    expect(failureOf(() => guestMemfdFactory.create(vm, { size: PAGE_SIZE, flags: -1 }))?.code).toBe('EINVAL');
    expect(failureOf(() => guestMemfdFactory.create(vm, { size: PAGE_SIZE, flags: 2 ** 63 }))?.code).toBe('EINVAL');
  });
});

describe('supported flags of non-default VM types (kvm_gmem_get_supported_flags)', () => {
  it('SEV and SEV-ES VMs have no private memory: MMAP | INIT_SHARED, with or without a backend', () => {
    for (const vmType of [KVM_X86_SEV_VM, KVM_X86_SEV_ES_VM]) {
      expect(guestMemfdFactory.supportedFlags(new FakeVm({ vmType, hasPrivateMem: false }))).toBe(MMAP | INIT_SHARED);
      expect(guestMemfdFactory.supportedFlags(new FakeVm({ vmType, hasPrivateMem: false, withBackend: true }))).toBe(MMAP | INIT_SHARED);
    }
  });
});

describe('KVM_CREATE_GUEST_MEMFD: which check fails, and the trace', () => {
  it('each HugeTLB refusal names its check; a created file is traced with its inode, size and flags', () => {
    const vm = new FakeVm();
    expect(failureOf(() => guestMemfdFactory.create(vm, { size: HPAGE * PAGE_SIZE, flags: GUESTMEM_HUGETLB_FLAG_2MB }))).toEqual({
      code: 'EINVAL',
      check: expect.stringContaining('HugeTLB page size other than 2 MiB'),
    });
    expect(failureOf(() => guestMemfdFactory.create(vm, { size: HPAGE * PAGE_SIZE, flags: GUEST_MEMFD_FLAG_HUGETLB }))?.check).toMatch(/without a page size/);
    expect(failureOf(() => guestMemfdFactory.create(vm, { size: PAGE_SIZE, flags: HUGE }))?.check).toMatch(/not a multiple of the 2 MiB HugeTLB page/);
    const f = gmem(vm, 2, MMAP);
    expect(events(vm, 'kvm_gmem_create')).toEqual([{ ino: f.ino, size: 2 * PAGE_SIZE, flags: MMAP }]);
  });

  it('a kernel whose fault path ignores KVM_MEMSLOT_GMEM_ONLY makes no gmem-only file', () => {
    const vm = new FakeVm({ profile: { ...UPSTREAM_PROFILE, gmemOnlySharedFaults: false } });
    expect(gmem(vm, 1, MMAP).gmemOnly).toBe(false);
    expect(gmem(new FakeVm(), 1, MMAP).gmemOnly).toBe(true);
  });

  it('npages is i_size in pages; fstat / ftruncate', () => {
    const f = gmem(new FakeVm(), 6);
    expect(f.npages).toBe(6);
    expect(failureOf(() => f.ftruncate(0))).toEqual({ code: 'EINVAL', check: 'kvm_gmem_setattr: guest_memfd size is immutable' });
  });
});

describe('file I/O of the pseudo file', () => {
  it('read(2)/write(2) are EINVAL and pread(2)/pwrite(2) ESPIPE, each naming guest_memfd', () => {
    const f = gmem(new FakeVm(), 1);
    for (const [fn, code] of [
      [() => f.read(), 'EINVAL'],
      [() => f.write(), 'EINVAL'],
      [() => f.pread(0), 'ESPIPE'],
      [() => f.pwrite(0), 'ESPIPE'],
      [() => f.fileRead(8), 'EINVAL'],
      [() => f.fileWrite(8), 'EINVAL'],
      [() => f.fileRead(8, 0), 'ESPIPE'],
      [() => f.fileWrite(8, 0), 'ESPIPE'],
    ] as const) {
      const e = failureOf(fn);
      expect(e?.code).toBe(code);
      expect(e?.check).toMatch(/guest_memfd/);
    }
  });
});

describe('binding: which check fails, and the trace', () => {
  it('bind and unbind are traced with the slot, its address space, the file range and gmem_only', () => {
    const vm = new FakeVm();
    const f = gmem(vm, 8, MMAP);
    const s = bindSlot({ id: 3, asId: 1, baseGfn: 0x10, npages: 2, file: f, offset: 4 * PAGE_SIZE });
    expect(events(vm, 'kvm_gmem_bind')).toEqual([{ slot: 3, as_id: 1, pgoff: 4, npages: 2, gmem_only: true }]);
    f.unbind(s);
    expect(events(vm, 'kvm_gmem_unbind')).toEqual([{ slot: 3, as_id: 1, pgoff: 4, npages: 2 }]);
    // a slot without a binding: nothing to drop, nothing traced
    expect(() => f.unbind(s)).not.toThrow();
    expect(() => f.unbind(fakeSlot({ id: 9, baseGfn: 0, npages: 1, file: f }))).not.toThrow();
    expect(events(vm, 'kvm_gmem_unbind')).toHaveLength(1);
    expect(f.boundRanges()).toEqual([]);
  });

  it('boundRanges lists the bindings in file order', () => {
    const f = gmem(new FakeVm(), 8);
    const b = bindSlot({ id: 2, baseGfn: 0x900, npages: 4, file: f, offset: 4 * PAGE_SIZE });
    const a = bindSlot({ id: 1, baseGfn: 0x100, npages: 2, file: f });
    expect(f.boundRanges().map((r) => [r.start, r.end, r.slot])).toEqual([
      [0, 2, a],
      [4, 8, b],
    ]);
  });

  it('each refusal names its check: fget after close, offset, folio alignment, overlap', () => {
    const vm = new FakeVm();
    const f = gmem(vm, 4);
    expect(failureOf(() => bindSlot({ id: 1, baseGfn: 0, npages: 1, file: f, offset: -PAGE_SIZE }))?.check).toBe(
      'kvm_gmem_bind: offset < 0, unaligned, or offset + size > i_size',
    );
    expect(failureOf(() => bindSlot({ id: 1, baseGfn: 0, npages: 1, file: f, offset: LOFF_NEGATIVE }))?.code).toBe('EINVAL');
    bindSlot({ id: 1, baseGfn: 0, npages: 2, file: f });
    expect(failureOf(() => bindSlot({ id: 2, baseGfn: 8, npages: 2, file: f, offset: PAGE_SIZE }))).toEqual({
      code: UPSTREAM_PROFILE.gmemBindOverlapErrno,
      check: 'kvm_gmem_bind: page already bound to another memslot',
    });
    f.release();
    expect(failureOf(() => bindSlot({ id: 3, baseGfn: 0, npages: 1, file: f }))).toEqual({ code: 'EBADF', check: 'kvm_gmem_bind: fget' });
    const h = guestMemfdFactory.create(vm, { size: 2 * HPAGE * PAGE_SIZE, flags: HUGE });
    expect(failureOf(() => bindSlot({ id: 4, baseGfn: 0, npages: 1, file: h, offset: PAGE_SIZE }))?.check).toMatch(/2 MiB folio size/);
  });
});

describe('the invalidate lock: every taker refused during a punch names itself', () => {
  it('bind, unbind, allocate, populate, memory failure, punch and close each say what would sleep', () => {
    const vm = snpVm();
    const f = gmem(vm, 8);
    const s = bindSlot({ id: 1, baseGfn: 0, npages: 4, file: f });
    expect(f.getPfn(s, 0, pfnOut())).toBe(0);
    const op = f.beginPunchHole(4 * PAGE_SIZE, PAGE_SIZE);
    const busy = (fn: () => unknown): string => {
      try {
        fn();
      } catch (e) {
        if (e instanceof InvalidateLockBusyError) {
          expect(e.name).toBe('InvalidateLockBusyError');
          return e.message;
        }
        throw e;
      }
      return 'not refused';
    };
    const tail = ': would sleep on filemap_invalidate_lock, held by a hole punch in progress';
    expect(busy(() => bindSlot({ id: 2, baseGfn: 8, npages: 1, file: f, offset: 5 * PAGE_SIZE }))).toBe(`kvm_gmem_bind${tail}`);
    expect(busy(() => f.unbind(s))).toBe(`kvm_gmem_unbind${tail}`);
    expect(busy(() => f.fallocate(KEEP, 0, PAGE_SIZE))).toBe(`kvm_gmem_allocate${tail}`);
    expect(busy(() => f.populate(populateReq(s, 1, 1)))).toBe(`kvm_gmem_populate${tail}`);
    expect(busy(() => f.poison(0))).toBe(`kvm_gmem_error_folio${tail}`);
    expect(busy(() => f.fallocate(PUNCH, 0, PAGE_SIZE))).toBe(`kvm_gmem_punch_hole${tail}`);
    expect(busy(() => f.release())).toBe(`kvm_gmem_release${tail}`);
    while (op.step());
    // the refused close changed nothing: the file can be closed now, once
    expect(f.live).toBe(true);
    f.release();
    expect(f.live).toBe(false);
    expect(() => f.release()).toThrow('guest_memfd closed twice');
  });

  it('closing the fd while a mapping holds the file does not wait for a punch; the last munmap does', () => {
    const vm = new FakeVm();
    const f = gmem(vm, 2, MMAP | INIT_SHARED);
    f.vmaOpen();
    const op = f.beginPunchHole(0, PAGE_SIZE);
    expect(() => f.release()).not.toThrow();
    expect(f.live).toBe(true);
    expect(() => f.vmaClose()).toThrow(/kvm_gmem_release: would sleep/);
    while (op.step());
  });
});

describe('mappings and close', () => {
  it('each mapping holds the file: the release waits for the last of several munmaps', () => {
    const vm = new FakeVm();
    const f = gmem(vm, 2, MMAP | INIT_SHARED);
    f.vmaOpen();
    f.vmaOpen();
    f.release();
    f.vmaClose();
    expect(f.live).toBe(true);
    expect(f.stats.mappings).toBe(1);
    f.vmaClose();
    expect(f.live).toBe(false);
    expect(() => f.vmaClose()).toThrow('vmaClose without vmaOpen');
    expect(() => f.vmaOpen()).toThrow('vmaOpen on a released guest_memfd');
  });

  it('close is traced with the inode and the bindings it dropped', () => {
    const vm = snpVm();
    const f = gmem(vm, 4);
    bindSlot({ id: 1, baseGfn: 0, npages: 2, file: f });
    bindSlot({ id: 2, baseGfn: 8, npages: 2, file: f, offset: 2 * PAGE_SIZE });
    f.release();
    expect(events(vm, 'kvm_gmem_release')).toEqual([{ ino: f.ino, bindings: 2 }]);
  });

  it('after the inode is evicted a host access is SIGBUS and memory failure finds nothing; nothing is allocated', () => {
    const vm = new FakeVm();
    const f = gmem(vm, 2, MMAP | INIT_SHARED);
    expect(typeof f.faultPage(0, true)).toBe('number');
    f.release();
    const before = vm.phys.allocatedPages;
    expect(f.faultPage(1, false)).toBe('SIGBUS');
    expect(f.poison(0)).toBe(false);
    expect(vm.phys.allocatedPages).toBe(before);
    expect(f.stats.allocatedPages).toBe(0);
  });
});

describe('inspection without side effects', () => {
  it('peekPfn and pageAt never allocate; forEachPage walks [start, end) only', () => {
    const vm = snpVm();
    const f = gmem(vm, 8);
    const s = bindSlot({ id: 1, baseGfn: 0x20, npages: 4, file: f, offset: 2 * PAGE_SIZE });
    expect(f.peekPfn(s, 0x21)).toBe(-1);
    expect(f.pageAt(3)).toBe(-1);
    expect(vm.phys.allocatedPages).toBe(0);
    const out = pfnOut();
    expect(f.getPfn(s, 0x21, out)).toBe(0);
    expect(f.peekPfn(s, 0x21)).toBe(out.pfn);
    expect(f.pageAt(3)).toBe(out.pfn);
    const other = gmem(vm, 8);
    const foreign = bindSlot({ id: 2, baseGfn: 0x20, npages: 4, file: other, offset: 2 * PAGE_SIZE });
    expect(f.peekPfn(foreign, 0x21)).toBe(-1);
    const seen: number[][] = [];
    f.forEachPage(0, 8, (p, pfn, flags) => seen.push([p, pfn, flags]));
    expect(seen).toEqual([[3, out.pfn, PAGE_UPTODATE | PAGE_PREPARED]]);
    f.forEachPage(3, 3, () => seen.push([-1]));
    f.forEachPage(4, 3, () => seen.push([-1]));
    f.forEachPage(4, 8, () => seen.push([-1]));
    expect(seen).toHaveLength(1);
  });

  it('punchHole(pgoff, npages) is madvise(MADV_REMOVE): the pages go, their mappings are zapped', () => {
    const vm = new FakeVm();
    const f = gmem(vm, 4, MMAP | INIT_SHARED);
    bindSlot({ id: 1, baseGfn: 0x40, npages: 4, file: f });
    for (let p = 0; p < 4; p++) f.faultPage(p, true);
    vm.clearCalls();
    f.punchHole(1, 2);
    expect(f.stats.allocatedPages).toBe(2);
    expect([0, 1, 2, 3].map((p) => f.pageAt(p) >= 0)).toEqual([true, false, false, true]);
    expect(vm.calls.filter((c) => c.op === 'unmap')).toEqual([{ op: 'unmap', start: 0x41, end: 0x43, filter: KVM_FILTER_SHARED }]);
    expect(events(vm, 'kvm_gmem_punch_hole')).toEqual([{ ino: f.ino, start: 1, end: 3 }]);
  });
});

describe('fallocate: vfs_fallocate() mode checks before the size check, kvm_gmem_fallocate() after it', () => {
  // offset and len are valid loff_t values, their sum is not: vfs_fallocate() answers EFBIG for
  // every mode it lets through, before guest_memfd's own checks (KEEP_SIZE, PUNCH_HOLE only)
  const big = 2 ** 62;
  it.each([
    ['allocate', 0, 'EFBIG'],
    ['KEEP_SIZE', KEEP, 'EFBIG'],
    ['PUNCH_HOLE | KEEP_SIZE', PUNCH, 'EFBIG'],
    ['PUNCH_HOLE', FALLOC_FL_PUNCH_HOLE, 'EOPNOTSUPP'],
    ['COLLAPSE_RANGE', COLLAPSE, 'EFBIG'],
    ['COLLAPSE_RANGE | KEEP_SIZE', COLLAPSE | KEEP, 'EOPNOTSUPP'],
    ['INSERT_RANGE', INSERT, 'EFBIG'],
    ['INSERT_RANGE | KEEP_SIZE', INSERT | KEEP, 'EOPNOTSUPP'],
    ['WRITE_ZEROES', WRITE_ZEROES, 'EFBIG'],
    ['WRITE_ZEROES | KEEP_SIZE', WRITE_ZEROES | KEEP, 'EOPNOTSUPP'],
    ['ZERO_RANGE', ZERO, 'EFBIG'],
    ['ZERO_RANGE | KEEP_SIZE', ZERO | KEEP, 'EFBIG'],
    ['UNSHARE_RANGE', UNSHARE, 'EFBIG'],
    ['UNSHARE_RANGE | KEEP_SIZE', UNSHARE | KEEP, 'EFBIG'],
    ['ZERO_RANGE | PUNCH_HOLE', ZERO | PUNCH, 'EOPNOTSUPP'],
    ['COLLAPSE_RANGE | INSERT_RANGE', COLLAPSE | INSERT, 'EOPNOTSUPP'],
    ['an unknown bit', 0x100, 'EOPNOTSUPP'],
  ])('%s with offset + len = 2^63', (_name, mode, code) => {
    const f = gmem(new FakeVm(), 1);
    expect(failureOf(() => f.fallocate(mode, big, big))?.code).toBe(code);
  });

  it('each EOPNOTSUPP names the check that refused the mode', () => {
    const f = gmem(new FakeVm(), 1);
    const check = (mode: number) => failureOf(() => f.fallocate(mode, 0, PAGE_SIZE))?.check;
    expect(check(0x100)).toBe('vfs_fallocate: unknown mode bits');
    expect(check(FALLOC_FL_PUNCH_HOLE)).toBe('vfs_fallocate: FALLOC_FL_PUNCH_HOLE without FALLOC_FL_KEEP_SIZE');
    expect(check(COLLAPSE | KEEP)).toBe('vfs_fallocate: this mode with FALLOC_FL_KEEP_SIZE');
    expect(check(COLLAPSE | INSERT)).toBe('vfs_fallocate: more than one mode');
    expect(check(ZERO)).toBe('kvm_gmem_fallocate: FALLOC_FL_KEEP_SIZE required');
    expect(check(0)).toBe('kvm_gmem_fallocate: FALLOC_FL_KEEP_SIZE required');
    expect(check(ZERO | KEEP)).toBe('kvm_gmem_fallocate: unsupported mode');
    expect(check(UNSHARE | KEEP)).toBe('kvm_gmem_fallocate: unsupported mode');
  });

  it('an offset or len of 2^63 (a negative loff_t) is EINVAL, not EFBIG', () => {
    const f = gmem(new FakeVm(), 1);
    expect(failureOf(() => f.fallocate(KEEP, LOFF_NEGATIVE, PAGE_SIZE))?.code).toBe('EINVAL');
    expect(failureOf(() => f.fallocate(KEEP, 0, LOFF_NEGATIVE))?.code).toBe('EINVAL');
  });

  it('a HugeTLB file allocates and punches whole 2 MiB folios: offset and len both aligned', () => {
    const f = guestMemfdFactory.create(new FakeVm(), { size: 4 * HPAGE * PAGE_SIZE, flags: HUGE });
    const check = (offset: number, len: number) => failureOf(() => f.fallocate(KEEP, offset, len))?.check ?? null;
    expect(check(PAGE_SIZE, HPAGE * PAGE_SIZE)).toMatch(/2 MiB folio size/);
    expect(check(0, PAGE_SIZE)).toMatch(/2 MiB folio size/);
    expect(check(HPAGE * PAGE_SIZE, HPAGE * PAGE_SIZE)).toBeNull();
  });
});

describe('host allocation failures (-ENOMEM)', () => {
  it('a fault, a host access, populate and memory failure of an allocated page all fail cleanly', () => {
    const vm = new FakeVm({ vmType: KVM_X86_SNP_VM, hasPrivateMem: true, withBackend: true });
    const f = gmem(vm, 4, MMAP);
    const s = bindSlot({ id: 1, baseGfn: 0, npages: 4, file: f });
    f.fallocate(KEEP, 0, 4 * PAGE_SIZE);
    vm.phys.framesLeft = 0;
    vm.clearCalls();
    const out = pfnOut();
    expect(f.getPfn(s, 0, out)).toBe(-ERRNO.ENOMEM);
    expect(out.pfn).toBe(-1);
    expect(f.populate(populateReq(s, 1, 2))).toBe(-ERRNO.ENOMEM);
    expect(f.poison(2)).toBe(false);
    expect(f.stats.poisonedPages).toBe(0);
    expect(vm.calls).toEqual([]);
    // the pages stay allocated, waiting for a frame
    expect(f.stats.allocatedPages).toBe(4);
    vm.phys.framesLeft = null;
    expect(f.getPfn(s, 0, out)).toBe(0);
    expect(f.poison(2)).toBe(true);
    expect(events(vm, 'kvm_gmem_error_folio')).toEqual([{ ino: f.ino, pgoff: 2 }]);
  });

  it('a host access through the mapping is SIGBUS when no frame can be had', () => {
    const vm = new FakeVm();
    const f = gmem(vm, 2, MMAP | INIT_SHARED);
    vm.phys.framesLeft = 0;
    expect(f.faultPage(0, true)).toBe('SIGBUS');
    expect(f.stats.allocatedPages).toBe(0);
  });

  it('a HugeTLB folio needs 512 contiguous frames: without them, or without a contiguous allocator, -ENOMEM', () => {
    for (const [vm, framesLeft] of [
      [new FakeVm({ phys: { without: ['allocContiguous', 'freeContiguous'] } }), null],
      [new FakeVm(), 511],
    ] as const) {
      vm.phys.framesLeft = framesLeft;
      const f = guestMemfdFactory.create(vm, { size: HPAGE * PAGE_SIZE, flags: HUGE });
      const s = bindSlot({ id: 1, baseGfn: 0, npages: HPAGE, file: f });
      expect(f.getPfn(s, 5, pfnOut())).toBe(-ERRNO.ENOMEM);
      expect(f.stats.allocatedPages).toBe(0);
      expect(vm.phys.allocatedPages).toBe(0);
    }
  });
});

describe('kvm_gmem_populate on the file', () => {
  function setup() {
    const vm = snpVm();
    const f = gmem(vm, 8);
    const s = bindSlot({ id: 1, baseGfn: 0x100, npages: 4, file: f, offset: 2 * PAGE_SIZE });
    return { vm, f, s };
  }

  it('populates the file pages of the slot: index = gfn - base_gfn + the slot offset', () => {
    const { f, s } = setup();
    const done: number[][] = [];
    const postPopulate = (gfn: number, pfn: number) => {
      done.push([gfn, pfn]);
      return 0;
    };
    expect(f.populate(populateReq(s, 0x101, 2, { postPopulate }))).toBe(2);
    expect(done.map(([g]) => g)).toEqual([0x101, 0x102]);
    expect(f.pageAt(3)).toBe(done[0]![1]);
    expect(f.pageAt(4)).toBe(done[1]![1]);
    expect(f.pageFlags(3) & PAGE_UPTODATE).toBe(PAGE_UPTODATE);
  });

  it('clamps to the end of the slot from a start inside it', () => {
    const { f, s } = setup();
    expect(f.populate(populateReq(s, 0x102, 10))).toBe(2);
    expect(f.stats.allocatedPages).toBe(2);
  });

  it('a source page that cannot be pinned (0 pages) is -ENOMEM; a negative errno is passed on', () => {
    const { f, s } = setup();
    expect(f.populate(populateReq(s, 0x100, 2, { src: 0x7000, getSrcPage: () => 0 }))).toBe(-ERRNO.ENOMEM);
    expect(f.populate(populateReq(s, 0x100, 2, { src: 0x7000, getSrcPage: () => -ERRNO.EFAULT }))).toBe(-ERRNO.EFAULT);
    let n = 0;
    expect(f.populate(populateReq(s, 0x100, 3, { src: 0x7000, getSrcPage: () => (n++ < 1 ? new Uint8Array(PAGE_SIZE) : 0) }))).toBe(1);
    expect(f.stats.allocatedPages).toBe(1);
  });

  it('a slot of another file is -EFAULT, a slot this file never bound -EIO; nothing is allocated', () => {
    const { vm, f } = setup();
    const other = gmem(vm, 4);
    const foreign = bindSlot({ id: 2, baseGfn: 0x100, npages: 4, file: other });
    expect(f.populate(populateReq(foreign, 0x100, 1))).toBe(-ERRNO.EFAULT);
    const unbound = fakeSlot({ id: 3, baseGfn: 0x800, npages: 2, file: f });
    expect(f.populate(populateReq(unbound, 0x800, 1))).toBe(-ERRNO.EIO);
    expect(f.stats.allocatedPages).toBe(0);
  });
});

describe('frames: vendor hooks, NUMA policy and the HugeTLB pool', () => {
  it('a backend without gmem_invalidate (TDX has none) frees order-0 and 2 MiB folios all the same', () => {
    const vm = new FakeVm({ vmType: KVM_X86_TDX_VM, hasPrivateMem: true, withBackend: true, noInvalidateHook: true });
    const f = gmem(vm, 2);
    const s = bindSlot({ id: 1, baseGfn: 0, npages: 2, file: f });
    expect(f.getPfn(s, 0, pfnOut())).toBe(0);
    expect(() => f.fallocate(PUNCH, 0, 2 * PAGE_SIZE)).not.toThrow();
    expect(vm.phys.allocatedPages).toBe(0);
    const h = guestMemfdFactory.create(vm, { size: HPAGE * PAGE_SIZE, flags: HUGE });
    const hs = bindSlot({ id: 2, baseGfn: 0x1000, npages: HPAGE, file: h });
    expect(h.getPfn(hs, 0x1000, pfnOut())).toBe(0);
    expect(() => h.fallocate(PUNCH, 0, HPAGE * PAGE_SIZE)).not.toThrow();
    expect(vm.phys.allocatedPages).toBe(0);
  });

  it('a new folio lands on the node of the file policy (kvm_gmem_get_folio: mpol for the index)', () => {
    const vm = snpVm();
    const f = gmem(vm, 4);
    const s = bindSlot({ id: 1, baseGfn: 0, npages: 4, file: f });
    f.sharedPolicy.set(0, 2, { mode: MPOL_INTERLEAVE, nodes: 0b110 });
    f.sharedPolicy.set(2, 3, { mode: MPOL_BIND, nodes: 0b1000 });
    const nodes = [0, 1, 2, 3].map((g) => {
      const out = pfnOut();
      expect(f.getPfn(s, g, out)).toBe(0);
      return vm.phys.nodeOf(out.pfn);
    });
    expect(nodes).toEqual([1, 2, 3, 0]);
  });

  it('a 2 MiB folio is invalidated once as a whole, and goes back to the pool for the next one', () => {
    const vm = snpVm();
    const f = guestMemfdFactory.create(vm, { size: 2 * HPAGE * PAGE_SIZE, flags: HUGE });
    const s = bindSlot({ id: 1, baseGfn: 0, npages: 2 * HPAGE, file: f });
    const out = pfnOut();
    expect(f.getPfn(s, 3, out)).toBe(0);
    const head = out.pfn - 3;
    vm.clearCalls();
    f.fallocate(PUNCH, 0, HPAGE * PAGE_SIZE);
    expect(vm.calls.filter((c) => c.op === 'invalidate')).toEqual([{ op: 'invalidate', start: head, end: head + HPAGE }]);
    expect(vm.phys.allocatedPages).toBe(0);
    expect(f.getPfn(s, 7, out)).toBe(0);
    expect(out.pfn - 7).toBe(head);
  });

  it('a poisoned page keeps its whole 2 MiB folio out of the pool; the folios around it are freed', () => {
    const vm = snpVm();
    const f = guestMemfdFactory.create(vm, { size: 3 * HPAGE * PAGE_SIZE, flags: HUGE });
    const s = bindSlot({ id: 1, baseGfn: 0, npages: 3 * HPAGE, file: f });
    for (const g of [0, HPAGE, 2 * HPAGE]) expect(f.getPfn(s, g, pfnOut())).toBe(0);
    expect(f.poison(HPAGE + 7)).toBe(true);
    expect(f.pageFlags(HPAGE + 7) & PAGE_HWPOISON).toBe(PAGE_HWPOISON);
    f.fallocate(PUNCH, 0, 3 * HPAGE * PAGE_SIZE);
    expect(f.stats.allocatedPages).toBe(0);
    expect(vm.phys.allocatedPages).toBe(HPAGE);
    // the first folio was freed although the middle one that follows is poisoned
    const f2 = guestMemfdFactory.create(vm, { size: HPAGE * PAGE_SIZE, flags: HUGE });
    expect(f2.getPfn(bindSlot({ id: 2, baseGfn: 0x10000, npages: HPAGE, file: f2 }), 0x10000, pfnOut())).toBe(0);
    expect(vm.phys.allocatedPages).toBe(2 * HPAGE);
  });

  it('a host that frees contiguous frames one by one gets every frame of a 2 MiB folio back', () => {
    const vm = new FakeVm({ vmType: KVM_X86_SNP_VM, hasPrivateMem: true, withBackend: true, phys: { without: ['freeContiguous'] } });
    const f = guestMemfdFactory.create(vm, { size: HPAGE * PAGE_SIZE, flags: HUGE });
    const s = bindSlot({ id: 1, baseGfn: 0, npages: HPAGE, file: f });
    const out = pfnOut();
    expect(f.getPfn(s, 0, out)).toBe(0);
    vm.clearCalls();
    f.fallocate(PUNCH, 0, HPAGE * PAGE_SIZE);
    const freed = vm.calls.filter((c) => c.op === 'free').map((c) => (c as { pfn: number }).pfn);
    expect(freed).toEqual(Array.from({ length: HPAGE }, (_, i) => out.pfn + i));
    expect(vm.phys.allocatedPages).toBe(0);
  });
});
