import { describe, expect, it } from 'vitest';
import { gpaToGfn, kvmGfnDirectBits, kvmGpaToGfn, kvmIsAddrDirect, kvmIsGfnAlias } from './gfn.js';
import { Kvm } from './kvm.js';
import { PAGE_SIZE } from './uapi.js';

/** a TDX-like VM: the shared bit is gpa bit 47 (gfn bit 35) */
const tdxLike = { backend: { gfnDirectBits: 2 ** 35 } };
const plain = { backend: null };

describe('gpa → gfn and the direct bits (arch/x86/kvm/mmu.h)', () => {
  it('strips the shared bit: both aliases of a page share one gfn', () => {
    expect(kvmGfnDirectBits(tdxLike)).toBe(2 ** 35);
    expect(kvmGfnDirectBits(plain)).toBe(0);
    expect(gpaToGfn(0x5123)).toBe(5);
    expect(kvmGpaToGfn(tdxLike, 2 ** 47 + 0x5000)).toBe(5);
    expect(kvmGpaToGfn(tdxLike, 0x5000)).toBe(5);
    expect(kvmGpaToGfn(plain, 2 ** 47 + 0x5000)).toBe(2 ** 35 + 5);
  });

  it('kvm_is_gfn_alias tests the bit itself; kvm_is_addr_direct is true without direct bits', () => {
    expect(kvmIsGfnAlias(tdxLike, 2 ** 35 + 1)).toBe(true);
    expect(kvmIsGfnAlias(tdxLike, 2 ** 36 + 1)).toBe(false); // a higher bit is not the alias bit
    expect(kvmIsGfnAlias(plain, 2 ** 35)).toBe(false);
    expect(kvmIsAddrDirect(tdxLike, 2 ** 47)).toBe(true);
    expect(kvmIsAddrDirect(tdxLike, PAGE_SIZE)).toBe(false);
    expect(kvmIsAddrDirect(plain, PAGE_SIZE)).toBe(true);
  });
});

describe('VM options', () => {
  it('a VM type without a backend takes none: any option is EINVAL at KVM_CREATE_VM', () => {
    const kvm = new Kvm();
    // @ts-expect-error the default VM has no options
    expect(() => kvm.createVm({ options: { directmap: 'split' } })).toThrow(/unknown KVM_X86_DEFAULT_VM VM option 'directmap' \(this VM type takes no options\)/);
    expect(kvm.createVm({ options: {} }).vmType).toBe(0);
  });
});
