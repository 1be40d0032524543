/**
 * kvm_gmem_populate() (virt/kvm/guest_memfd.c, CONFIG_HAVE_KVM_ARCH_GMEM_POPULATE;
 * kvm-uapi.md §6.7): launch-time population of private memory. SNP's
 * KVM_SEV_SNP_LAUNCH_UPDATE and TDX's KVM_TDX_INIT_MEM_REGION call it with a callback that
 * hands each page to the firmware (SNP_LAUNCH_UPDATE, TDH.MEM.PAGE.ADD).
 *
 * The populated page is marked up to date without being zeroed: its contents are what the
 * callback put there. No gmem_prepare runs here; the callback does the vendor's work.
 */
import { ERRNO, KVM_MEM_GUEST_MEMFD, PAGE_SIZE } from '@ccmem/core';
import type { MemslotView } from '@ccmem/core';
import { GuestMemfd } from './guest-memfd.js';

export interface KvmGmemPopulateArgs {
  /** gfn_to_memslot(kvm, start_gfn), or null if no slot holds it */
  readonly slot: MemslotView | null;
  readonly startGfn: number;
  readonly npages: number;
  /** userspace source address, or null for no source (e.g. zero pages) */
  readonly src: number | null;
  /**
   * get_user_pages_fast() of one source page: its bytes, or a negative errno. Required when
   * `src` is not null.
   */
  readonly getSrcPage?: (hva: number) => Uint8Array | number;
  /** kvm_range_has_memory_attributes(gfn, gfn + 1, PRIVATE, PRIVATE), supplied by the VM */
  readonly isPrivate: (gfn: number) => boolean;
  /** the vendor's post_populate callback: 0 or a negative errno */
  readonly postPopulate: (gfn: number, pfn: number, srcPage: Uint8Array | null) => number;
  /**
   * The source is pinned page by page (the 2026 change that GUPs source pages before
   * populating), so an unaligned `src` is EINVAL. Default true (upstream); false for v6.18,
   * where the vendor callback copies from `src + i * PAGE_SIZE` as given.
   */
  readonly alignedSrc?: boolean;
}

/**
 * Returns the number of pages populated if at least one was, otherwise 0 or the first
 * negative errno (`ret && !i ? ret : i`). The range is clamped to the end of the slot; the
 * caller loops for ranges that span slots.
 */
export function kvmGmemPopulate(args: KvmGmemPopulateArgs): number {
  let { npages } = args;
  const { slot, startGfn, src } = args;
  // 1. (WARN_ON_ONCE in the kernel)
  if (npages <= 0) return -ERRNO.EINVAL;
  if (src !== null && args.alignedSrc !== false && src % PAGE_SIZE !== 0) return -ERRNO.EINVAL;
  // 2. kvm_slot_has_gmem()
  if (slot === null || !(slot.flags & KVM_MEM_GUEST_MEMFD)) return -ERRNO.EINVAL;
  // 3. kvm_gmem_get_file(): closed, or a provider that cannot populate (device fd)
  const file = slot.gmemFile;
  if (!(file instanceof GuestMemfd)) return file === null ? -ERRNO.EFAULT : -ERRNO.EINVAL;
  if (!file.live) return -ERRNO.EFAULT;
  // 4.
  npages = Math.min(slot.npages - (startGfn - slot.baseGfn), npages);
  let ret = 0;
  let i = 0;
  for (; i < npages; i++) {
    // 5. (no signals in the model)
    let srcPage: Uint8Array | null = null;
    if (src !== null) {
      const got = args.getSrcPage ? args.getSrcPage(src + i * PAGE_SIZE) : -ERRNO.EFAULT;
      if (typeof got === 'number') {
        ret = got < 0 ? got : -ERRNO.ENOMEM;
        break;
      }
      srcPage = got;
    }
    ret = file.populatePage({
      slot,
      gfn: startGfn + i,
      srcPage,
      isPrivate: args.isPrivate,
      postPopulate: args.postPopulate,
    });
    if (ret !== 0) break;
  }
  return ret !== 0 && i === 0 ? ret : i;
}
