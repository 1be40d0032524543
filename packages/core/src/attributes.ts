/**
 * KVM_SET_MEMORY_ATTRIBUTES (virt/kvm/kvm_main.c kvm_vm_ioctl_set_mem_attributes /
 * kvm_vm_set_mem_attributes; x86 hooks in arch/x86/kvm/mmu/mmu.c; kvm-uapi.md §4).
 *
 * Phases (one `step()` each), with the vendor hooks seed 002 argues about:
 *   prepare    vendor preSetMemoryAttributes()          outside mmu_lock (may sleep)
 *   invalidate mmu_lock: invalidate_begin, range_add per slot (+ straddling huge pages),
 *              zap the old type's mappings (kvm_arch_pre_set_memory_attributes)
 *   store      kvm->mem_attr_array updated (here: a range map)
 *   post       mmu_lock: vendor setMemoryAttributesLocked(), MIXED recompute
 *              (kvm_arch_post_set_memory_attributes), invalidate_end (seq++)
 *   finish     vendor postSetMemoryAttributes()         outside mmu_lock
 */
import { ERRNO, fail } from './errno.js';
import { KVM_FILTER_PRIVATE, KVM_FILTER_SHARED, type AttributeChange } from './backend.js';
import type { KernelOp } from './steps.js';
import { KVM_MEMORY_ATTRIBUTE_PRIVATE, PAGE_SIZE, PG_LEVEL_1G, PG_LEVEL_2M } from './uapi.js';
import { PAGES_PER_LEVEL } from './mmu/tdp-iter.js';
import type { AttributesVm } from './attributes-vm.js';
import type { KvmMemorySlot } from './memslot/memslot.js';
import { u64AddWraps, u64PageAligned, u64SafeNumber, uapiU64, type U64 } from './u64.js';

/** struct kvm_memory_attributes */
export interface KvmMemoryAttributes {
  /** u64: a bigint keeps values above 2^53 exact */
  address: U64;
  size: U64;
  /** u64: checked bit by bit against the supported attributes on the exact value */
  attributes: U64;
  flags?: U64;
}

/** kvm_supported_mem_attributes() */
export function kvmSupportedMemAttributes(hasPrivateMem: boolean): number {
  return hasPrivateMem ? KVM_MEMORY_ATTRIBUTE_PRIVATE : 0;
}

type Phase = 'prepare' | 'invalidate' | 'store' | 'post' | 'finish' | 'done';

export class SetMemoryAttributesOp implements KernelOp<void> {
  readonly name = 'kvm_vm_set_mem_attributes';
  phase: Phase = 'done';
  private began = false;
  private start = 0;
  private end = 0;
  private attributes = 0;
  /** what the vendor hooks receive: built on the first hook call of each run */
  private changeObj: AttributeChange | null = null;
  private error = 0;
  private flush = false;

  /** runs checks 1–6 of kvm-uapi.md §4 now: a failed call changes nothing */
  constructor(
    private readonly vm: AttributesVm,
    attrs: KvmMemoryAttributes,
  ) {
    this.reset(attrs);
  }

  /**
   * Starts the op over for `attrs`, as a new op would (checks 1–6, then the no-op test), so
   * the synchronous ioctl path can run one op object per VM instead of allocating one per
   * call. Only an op whose phase is 'done' may be reset; a failed check throws and leaves
   * the op 'done'.
   */
  reset(attrs: KvmMemoryAttributes): void {
    const vm = this.vm;
    const supported = kvmSupportedMemAttributes(vm.hasPrivateMem);
    // the common call: every field a number below 2^53 and every check below passes; the
    // checks then run on numbers (exact there: sums below 2^53, % 4096, 32-bit attributes)
    // and allocate no BigInt. Anything else takes the u64 path, which fails as it must.
    const fN = u64SafeNumber(attrs.flags ?? 0);
    const aN = u64SafeNumber(attrs.attributes);
    const addrN = u64SafeNumber(attrs.address);
    const sizeN = u64SafeNumber(attrs.size);
    let start: number;
    let end: number;
    let attrNum: number;
    if (
      fN === 0 &&
      aN >= 0 &&
      aN <= 0xffffffff &&
      (aN & ~supported) === 0 &&
      addrN >= 0 &&
      sizeN > 0 &&
      addrN % PAGE_SIZE === 0 &&
      sizeN % PAGE_SIZE === 0 &&
      addrN + sizeN < 2 ** 53
    ) {
      start = addrN / PAGE_SIZE;
      end = (addrN + sizeN) / PAGE_SIZE;
      attrNum = aN;
    } else {
      const c = SetMemoryAttributesOp.checkU64(vm, attrs, supported);
      start = c.start;
      end = c.end;
      attrNum = c.attributes;
    }
    this.start = start;
    this.end = end;
    this.attributes = attrNum;
    this.changeObj = null;
    this.began = false;
    this.error = 0;
    this.flush = false;
    // kvm_range_has_memory_attributes(): nothing to do if the range already has them
    this.phase = vm.attributes.rangeHasValue(start, end, attrNum) ? 'done' : 'prepare';
    if (vm.tracer.enabled) {
      vm.tracer.emit('kvm_vm_set_mem_attributes', { start, end, attributes: attrNum, noop: this.phase === 'done' });
    }
  }

  /** the change the vendor hooks see (one object per run) */
  private get change(): AttributeChange {
    return (this.changeObj ??= { start: this.start, end: this.end, attributes: this.attributes });
  }

  /** checks 1–6 on the exact u64 values (bigints, or numbers the fast path did not take) */
  private static checkU64(vm: AttributesVm, attrs: KvmMemoryAttributes, supported: number): AttributeChange {
    // every field is a u64 of the uAPI struct: anything else never reaches the kernel
    const flags = uapiU64(attrs.flags ?? 0, 'KVM_SET_MEMORY_ATTRIBUTES', 'flags');
    const attributes = uapiU64(attrs.attributes, 'KVM_SET_MEMORY_ATTRIBUTES', 'attributes');
    const address = uapiU64(attrs.address, 'KVM_SET_MEMORY_ATTRIBUTES', 'address');
    const size = uapiU64(attrs.size, 'KVM_SET_MEMORY_ATTRIBUTES', 'size');
    if (flags !== 0n) fail('EINVAL', 'kvm_vm_ioctl_set_mem_attributes: flags must be 0');
    // on all 64 bits: 0x1_0000_0008 is EINVAL, not PRIVATE
    if (attributes & ~BigInt(supported)) fail('EINVAL', 'kvm_vm_ioctl_set_mem_attributes: unsupported attributes');
    // gfns (< 2^52) and the (supported, so small) attributes are numbers from here on
    if (size === 0n || u64AddWraps(address, size))
      fail('EINVAL', 'kvm_vm_ioctl_set_mem_attributes: size is 0 or address + size wraps');
    if (!u64PageAligned(address) || !u64PageAligned(size))
      fail('EINVAL', 'kvm_vm_ioctl_set_mem_attributes: address or size not page aligned');
    const start = Number(address >> 12n);
    const end = Number((address + size) >> 12n);
    return { start, end, attributes: Number(attributes) };
  }

  step(): boolean {
    const vm = this.vm;
    switch (this.phase) {
      case 'prepare': {
        const r = vm.backend?.preSetMemoryAttributes ? vm.backend.preSetMemoryAttributes(this.change) : 0;
        if (r < 0) {
          this.error = r;
          this.phase = 'done';
          return true;
        }
        this.phase = 'invalidate';
        return false;
      }
      case 'invalidate':
        this.invalidate();
        this.phase = 'store';
        return false;
      case 'store':
        vm.attributes.set(this.start, this.end, this.attributes);
        if (vm.tracer.enabled) {
          vm.tracer.emit('kvm_mem_attr_store', { start: this.start, end: this.end, attributes: this.attributes });
        }
        this.phase = 'post';
        return false;
      case 'post':
        if (this.began) {
          if (vm.backend?.setMemoryAttributesLocked) vm.backend.setMemoryAttributesLocked(this.change);
          if (vm.tracer.enabled) vm.tracer.emit('kvm_arch_post_set_memory_attributes', { start: this.start, end: this.end });
          vm.mmuInvalidate.end();
          if (vm.tracer.enabled) vm.tracer.emit('kvm_mmu_invalidate_end', { seq: vm.mmuInvalidate.seq });
        }
        this.phase = 'finish';
        return false;
      case 'finish': {
        const r = vm.backend?.postSetMemoryAttributes ? vm.backend.postSetMemoryAttributes(this.change) : 0;
        if (r < 0) this.error = r;
        this.phase = 'done';
        return true;
      }
      case 'done':
        return true;
    }
  }

  result(): void {
    if (this.error < 0) {
      const name = (Object.keys(ERRNO) as (keyof typeof ERRNO)[]).find((k) => ERRNO[k] === -this.error) ?? 'EIO';
      fail(name, `${this.vm.backend?.name ?? 'vendor'} attribute hook failed`);
    }
  }

  /**
   * range_add for the 2M and 1G huge pages around `gfn` that lie inside the slot and are not
   * mixed, i.e. the attribute run [runStart, runEnd) holding `gfn` covers them
   */
  private addUnmixedHugePages(gfn: number, slotStart: number, slotEnd: number, runStart: number, runEnd: number): void {
    for (let level = PG_LEVEL_2M; level <= PG_LEVEL_1G; level++) {
      const n = PAGES_PER_LEVEL[level]!;
      const hs = gfn - (gfn % n);
      if (hs >= slotStart && hs + n <= slotEnd && runStart <= hs && runEnd >= hs + n) {
        this.vm.mmuInvalidate.rangeAdd(hs, hs + n);
      }
    }
  }

  /** the pre pass: kvm_handle_gfn_range(kvm_pre_set_memory_attributes) over every slot */
  private invalidate(): void {
    this.flush = false;
    this.vm.forEachMemslotInGfnRange(this.start, this.end, this.invalidateSlot);
    if (this.flush) this.vm.flushRemoteTlbs();
  }

  /** kvm_pre_set_memory_attributes() on one slot's part of the range (one closure per op) */
  private readonly invalidateSlot = (slot: KvmMemorySlot): void => {
    const vm = this.vm;
    const slotEnd = slot.baseGfn + slot.npages;
    const start = Math.max(this.start, slot.baseGfn);
    const end = Math.min(this.end, slotEnd);
    if (start >= end) return;
    if (!this.began) {
      vm.mmuInvalidate.begin();
      this.began = true;
      if (vm.tracer.enabled) vm.tracer.emit('kvm_mmu_invalidate_begin', { start: this.start, end: this.end });
    }
    vm.mmuInvalidate.rangeAdd(start, end);
    // kvm_arch_pre_set_memory_attributes(): a huge SPTE over the head/tail huge page is
    // about to be split by the change, so faults on its neighbours must retry too. A huge
    // page is mixed (hugepage_test_mixed()) iff a run boundary falls strictly inside it; the
    // run holding the edge gfn answers that for both levels (one lookup per edge, and one in
    // all when both edges lie in the same run).
    const attrs = vm.attributes;
    attrs.seekRun(start);
    this.addUnmixedHugePages(start, slot.baseGfn, slotEnd, attrs.runStart, attrs.runEnd);
    const last = end - 1;
    if (last >= attrs.runEnd) attrs.seekRun(last);
    this.addUnmixedHugePages(last, slot.baseGfn, slotEnd, attrs.runStart, attrs.runEnd);
    const filter = this.attributes & KVM_MEMORY_ATTRIBUTE_PRIVATE ? KVM_FILTER_SHARED : KVM_FILTER_PRIVATE;
    if (vm.zapGfnRange(start, end, filter)) this.flush = true;
  };
}
