/** Model handlers: VM ioctls, guest accesses and the exits userspace completes, `assert`. */
import { isKvmError, KVM_X86_TDX_VM } from '@ccmem/core';
import { ASSERT_LOCATORS } from '../ops/assert.js';
import { inspectState, type AssertLocators } from './inspect.js';
import { clearBitmapSparse, dirtyPageList } from '../dirty-pages.js';
import { accessOutcome, guestOpOutcome, type ModelHandlers } from './run.js';

export const KVM_IOCTL_HANDLERS = {
  set_user_memory_region(a, m) {
    m.vmOf(a.vm).setUserMemoryRegion({ slot: a.slot, flags: a.flags ?? 0, guest_phys_addr: a.guest_phys_addr, memory_size: a.memory_size, userspace_addr: a.userspace_addr });
    return {};
  },
  set_user_memory_region2(a, m) {
    m.vmOf(a.vm).setUserMemoryRegion2({
      slot: a.slot,
      flags: a.flags ?? 0,
      guest_phys_addr: a.guest_phys_addr,
      memory_size: a.memory_size,
      userspace_addr: a.userspace_addr,
      guest_memfd_offset: a.guest_memfd_offset ?? 0,
      // the u32 field: a negative fd is passed as its two's complement (fget() then finds none)
      guest_memfd: (a.guest_memfd ?? 0) >>> 0,
    });
    return {};
  },
  set_memory_attributes(a, m) {
    m.vm.setMemoryAttributes({ address: a.address, size: a.size, attributes: a.attributes, flags: a.flags ?? 0 });
    return {};
  },
  get_dirty_log(a, m) {
    return { dirty_pages: dirtyPageList(m.vm.getDirtyLogBitmap({ slot: a.slot })) };
  },
  clear_dirty_log(a, m) {
    // the user buffer: DIV_ROUND_UP(num_pages, 64) longs, bit 0 = first_page; never more than
    // the slot can need (a longer range fails the kernel's range check before the copy)
    let npages = 0;
    try {
      npages = m.vm.inspectMemslot(a.slot >>> 16, a.slot & 0xffff)?.npages ?? 0;
    } catch {
      // no such address space: the ioctl fails its slot check (EINVAL) before the copy
    }
    const bytes = clearBitmapSparse(a.num_pages, a.dirty_bitmap, Math.ceil(npages / 64) * 8);
    m.vm.clearDirtyLog({ slot: a.slot, first_page: a.first_page, num_pages: a.num_pages, dirty_bitmap: bytes });
    return {};
  },
  check_extension: (a, m) => ({ value: a.on === 'system' ? m.kvm.checkExtension(a.cap) : m.vm.checkExtension(a.cap) }),
  enable_cap(a, m) {
    m.vm.enableCap({ cap: a.cap, flags: a.flags ?? 0, args: a.args ?? [] });
    return {};
  },
  // (`bare` matters to the real-KVM target only: the model's vCPU runs no guest code)
  create_vcpu: (a, m) => ({ result: m.vm.createVcpu(a.id).id }),

  guest_read: (a, m) => accessOutcome(m.guestVcpu(a.vcpu).access({ gpa: a.gpa, size: a.size, kind: 'read', private: a.private ?? false })),
  guest_write: (a, m) => accessOutcome(m.guestVcpu(a.vcpu).access({ gpa: a.gpa, size: a.size, kind: 'write', value: a.value, private: a.private ?? false })),
  guest_fetch: (a, m) => accessOutcome(m.guestVcpu(a.vcpu).access({ gpa: a.gpa, size: 1, kind: 'fetch', private: a.private ?? false })),
  complete_mmio(a, m) {
    const vcpu = m.vcpu(a.vcpu);
    // KVM_RUN after a KVM_EXIT_MMIO: a read takes kvm_run.mmio.data; a write is done
    // a read takes kvm_run.mmio.data; a write is done; either may exit again for the next
    // fragment of a page-crossing access
    return vcpu.mmioNeeded ? accessOutcome(vcpu.completeMmio(a.data ?? 0n)) : {};
  },
  complete_hypercall(a, m) {
    const vcpu = m.vcpu(a.vcpu);
    const generic = m.hypercalls.complete(vcpu.id, a.ret);
    if (generic) return guestOpOutcome(generic, 'hypercall');
    const r = vcpu.completeHypercall(a.ret);
    if (r === null) return { detail: { reason: 'no hypercall was pending: KVM_RUN re-entered the guest' } };
    return guestOpOutcome(r, m.vm.vmType === KVM_X86_TDX_VM ? 'tdx' : 'other');
  },
  pre_fault_memory(a, m) {
    const range = { gpa: a.gpa, size: a.size, flags: a.flags ?? 0 };
    try {
      m.vcpu(a.vcpu).preFaultMemory(range);
    } catch (e) {
      // the remaining range is copied back even when the ioctl fails
      if (isKvmError(e)) return { errno: e.code, gpa: Number(range.gpa), size: Number(range.size), detail: { check: e.check } };
      throw e;
    }
    return { gpa: Number(range.gpa), size: Number(range.size) };
  },

  assert(a, m) {
    const loc: AssertLocators = { what: a.what };
    for (const k of ASSERT_LOCATORS) if (k !== 'what' && typeof a[k] === 'number') loc[k] = a[k];
    return { detail: inspectState(m.vm, m.kvm.process, loc) };
  },
} satisfies ModelHandlers;
