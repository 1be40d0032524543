/** The SNP backend inside the core VM with guest_memfd. */
import { describe, expect, it } from 'vitest';
import { KVM_CAP_EXIT_HYPERCALL, KVM_MEMORY_ATTRIBUTE_PRIVATE, KVM_MEM_GUEST_MEMFD, KVM_X86_SNP_VM, PAGE_SIZE, PG_LEVEL_2M, PG_LEVEL_4K, SetMemoryAttributesOp } from '@ccmem/core';
import { createDeviceFd } from '@ccmem/gmem';
import type { SnpVmOptions } from './edge.js';
import { INITIAL_VMSA_GPA, LaunchDigest } from './launch-digest.js';
import { SNP_PAGE_STATE_PRIVATE } from './snp-backend.js';
import { GiB, MiB, snpKvm, snpVm as makeSnpVm } from './testing/snp-vm.js';

/** the positional form the tests below use */
function snpVm(options: SnpVmOptions = {}, vcpus = 1, profile = 'upstream') {
  return makeSnpVm({ options, vcpus, profile });
}

describe('SNP VM end to end', () => {
  it('LAUNCH_UPDATE argument checks follow the kernel profile (len 0; uaddr 0 / unaligned)', () => {
    const gfn = (4 * GiB) / PAGE_SIZE;
    for (const profile of ['upstream', 'linux-6.18']) {
      const { kvm, vm, b, hva } = snpVm({}, 1, profile);
      vm.setMemoryAttributes({ address: 4 * GiB, size: 2 * PAGE_SIZE, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE, flags: 0 });
      kvm.process.mm.writeBytes(hva + 0x800, new Uint8Array(PAGE_SIZE).fill(9));
      vm.memoryEncryptOp({ cmd: 'snp_launch_start' });
      const upd = (uaddr: number, len = PAGE_SIZE, type = 1) => () => vm.memoryEncryptOp({ cmd: 'snp_launch_update', gfn_start: gfn, uaddr, len, type, flags: 0 });
      // "Reject non-positive effective lengths during LAUNCH_UPDATE" is in both
      expect(upd(hva, 0)).toThrow(expect.objectContaining({ code: 'EINVAL' }));
      if (profile === 'upstream') {
        expect(upd(hva + 0x800)).toThrow(expect.objectContaining({ code: 'EINVAL' }));
        expect(upd(0)).toThrow(expect.objectContaining({ code: 'EINVAL' }));
        expect((b.inspect!({ what: 'rmp', gpa: 4 * GiB }) as { assigned?: boolean } | null)?.assigned ?? false).toBe(false);
        expect(upd(0, PAGE_SIZE, 3)()).toMatchObject({ ret: 0 }); // ZERO ignores uaddr
      } else {
        expect(upd(0)).toThrow(expect.objectContaining({ code: 'EIO' })); // copy_from_user(0) → EFAULT → EIO
        expect(upd(hva + 0x800)()).toMatchObject({ ret: 0, out: { uaddr: hva + 0x800 + PAGE_SIZE } });
        const pfn = (b.inspect!({ what: 'rmp', gpa: 4 * GiB }) as { pfn: number }).pfn;
        expect(vm.readPfn(pfn, 0, 4)).toEqual(new Uint8Array(4).fill(9));
      }
    }
  });

  it('PSC userspace errors follow the profile: upstream 0/EINVAL/EAGAIN only, anything else fails KVM_RUN', () => {
    const gfn = (4 * GiB) / PAGE_SIZE;
    for (const profile of ['upstream', 'linux-6.18']) {
      const { vm, vcpu } = snpVm({}, 1, profile);
      vm.enableCap({ cap: KVM_CAP_EXIT_HYPERCALL, args: [1 << 12] });
      const ghcb = (ret: number) => {
        expect(vcpu.guestOp({ op: 'psc', entries: [{ gfn, operation: SNP_PAGE_STATE_PRIVATE }] }).exit).toMatchObject({ reason: 'KVM_EXIT_HYPERCALL' });
        return vcpu.completeHypercall(ret);
      };
      const msr = (ret: number) => {
        expect(vcpu.guestOp({ op: 'psc_msr', gpa: 4 * GiB, operation: SNP_PAGE_STATE_PRIVATE }).exit).toMatchObject({ reason: 'KVM_EXIT_HYPERCALL' });
        return vcpu.completeHypercall(ret);
      };
      // SNP has no retry code: EAGAIN and EINVAL are both an error for the guest
      expect(ghcb(11)).toMatchObject({ ret: 0x100 * 2 ** 32 });
      expect(msr(22)).toMatchObject({ ret: 'GHCB_MSR_PSC_RESP_ERROR' });
      if (profile === 'upstream') {
        expect(ghcb(1)).toMatchObject({ errno: 'EINVAL' });
        expect(vcpu.completeHypercall(0)).toBeNull();
        expect(msr(-22)).toMatchObject({ errno: 'EINVAL' });
      } else {
        expect(ghcb(1)).toMatchObject({ ret: 0x100 * 2 ** 32 });
        expect(msr(1)).toMatchObject({ ret: 'GHCB_MSR_PSC_RESP_ERROR' });
      }
      expect(vm.memIsPrivate(gfn)).toBe(false);
    }
  });

  it('liveness: a provider that skips gmem_prepare is refused at binding, and a PVALIDATE that can never succeed is flagged', () => {
    const kvm = snpKvm();
    const vm = kvm.createVm({ type: KVM_X86_SNP_VM });
    const dev = kvm.process.installFd(createDeviceFd(vm, { size: 2 * MiB }));
    expect(() => vm.setUserMemoryRegion2({ slot: 0, flags: KVM_MEM_GUEST_MEMFD, guest_phys_addr: 4 * GiB, memory_size: 2 * MiB, userspace_addr: 0, guest_memfd: dev, guest_memfd_offset: 0 })).toThrow(expect.objectContaining({ code: 'EINVAL' }));
    expect(vm.gfnToMemslot((4 * GiB) / PAGE_SIZE)).toBeNull();
    // if a provider ever skips the prepare step again, the invariant checker says so
    const t = snpVm();
    (t.b as { gmemPrepare?: unknown }).gmemPrepare = () => 0;
    t.vm.setMemoryAttributes({ address: 4 * GiB, size: PAGE_SIZE, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE, flags: 0 });
    expect(t.vcpu.guestOp({ op: 'pvalidate', gpa: 4 * GiB, level: PG_LEVEL_4K, validate: true })).toMatchObject({ ret: 'npf' });
    expect(t.b.checkInvariants!().some((v) => v.startsWith('livelock: PVALIDATE'))).toBe(true);
  });

  it('2 MiB guest_memfd folios: 2M RMPUPDATE at prepare, 2M PVALIDATE, PSMASH on a 4K PVALIDATE, 2M reclaim on punch', () => {
    const { vm, vcpu, b, punchHole } = makeSnpVm({ options: { directmap: 'unmap' }, huge: true, size: 2 * MiB });
    vm.setMemoryAttributes({ address: 4 * GiB, size: 2 * MiB, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE, flags: 0 });
    expect(vcpu.guestOp({ op: 'pvalidate', gpa: 4 * GiB, level: PG_LEVEL_2M, validate: true })).toMatchObject({ ret: 0 });
    const head = b.inspect!({ what: 'rmp', gpa: 4 * GiB }) as { pfn: number; pagesize: number; validated: boolean };
    expect(head).toMatchObject({ pagesize: 1, validated: true });
    expect(head.pfn % 512).toBe(0);
    // the unmap policy took all 512 frames out of the direct map for the 2M RMPUPDATE
    expect(b.inspect!({ what: 'directmap', pfn: head.pfn + 511 })).toMatchObject({ present: false });
    expect(vcpu.guestWrite(4 * GiB + 0x5000, 8, 9n, true)).toEqual({});
    expect(vm.mmu.leafAt((4 * GiB) / PAGE_SIZE + 5, true)?.level).toBe(2);
    const psmashes = () => ((b.inspect!({ what: 'stats' }) as { backend: { rmpFaultPsmash: number } }).backend.rmpFaultPsmash);
    const psmash = psmashes();
    expect(vcpu.guestOp({ op: 'pvalidate', gpa: 4 * GiB + 0x3000, level: PG_LEVEL_4K, validate: false })).toMatchObject({ ret: 0 });
    expect(psmashes()).toBe(psmash + 1);
    expect(b.inspect!({ what: 'rmp', gpa: 4 * GiB + 0x5000 })).toMatchObject({ pagesize: 0, validated: true });
    expect(b.checkInvariants!()).toEqual([]);
    punchHole(0, 2 * MiB);
    expect(b.host.rmp.lookup(head.pfn)?.assigned ?? false).toBe(false);
    expect(b.host.rmp.lookup(head.pfn + 511)?.assigned ?? false).toBe(false);
    expect(b.inspect!({ what: 'directmap', pfn: head.pfn + 511 })).toMatchObject({ present: true });
    expect(b.checkInvariants!()).toEqual([]);
  });

  it('launch: LAUNCH_UPDATE through kvm_gmem_populate, LAUNCH_FINISH allows pre-fault', () => {
    const { kvm, vm, b, hva } = snpVm();
    vm.setMemoryAttributes({ address: 4 * GiB, size: 2 * PAGE_SIZE, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE, flags: 0 });
    kvm.process.mm.writeBytes(hva, new Uint8Array(PAGE_SIZE).fill(7));
    expect(vm.memoryEncryptOp({ cmd: 'snp_launch_start' })).toEqual({ ret: 0 });
    const r = vm.memoryEncryptOp({ cmd: 'snp_launch_update', gfn_start: (4 * GiB) / PAGE_SIZE, uaddr: hva, len: 2 * PAGE_SIZE, type: 1, flags: 0 });
    expect(r.out).toMatchObject({ len: 0 });
    // already populated: -EEXIST inside populate, -EIO from the ioctl
    expect(() => vm.memoryEncryptOp({ cmd: 'snp_launch_update', gfn_start: (4 * GiB) / PAGE_SIZE, uaddr: hva, len: PAGE_SIZE, type: 1, flags: 0 })).toThrow(/EIO/);
    expect(b.preFaultAllowed()).toBe(false);
    vm.memoryEncryptOp({ cmd: 'snp_launch_finish' });
    expect(b.preFaultAllowed()).toBe(true);
    expect(b.checkInvariants!()).toEqual([]);
  });

  it('set-attributes timing: a fault before the post hook loops on RMP #NPFs until the RMPUPDATE lands', () => {
    const { vm, vcpu, b } = snpVm({ rmpTiming: 'set-attributes' });
    const op = new SetMemoryAttributesOp(vm, { address: 4 * GiB, size: 4 * PAGE_SIZE, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE, flags: 0 });
    while (op.phase !== 'finish') op.step(); // stored, invalidation ended, post hook not run yet
    const during = vcpu.guestWrite(4 * GiB, 8, 1n, true);
    expect(during.exit?.reason).toBe('KVM_EXIT_INTERNAL_ERROR'); // the guest never got through
    const stats = b.inspect!({ what: 'stats' }) as { backend: { rmpFaultUnassigned: number; rmpFaults: number } };
    expect(stats.backend.rmpFaultUnassigned).toBeGreaterThan(10); // sev_handle_rmp_fault: nothing to do, again and again
    expect(stats.backend.rmpFaultUnassigned).toBe(stats.backend.rmpFaults);
    // the invariant checker sees the race: a private NPT mapping whose page the RMP does not give the guest
    expect(b.checkInvariants!().some((v) => /has no assigned RMP entry/.test(v))).toBe(true);
    op.step(); // postSetMemoryAttributes: RMPUPDATE
    expect(vcpu.guestWrite(4 * GiB, 8, 1n, true).exception?.vector).toBe('#VC');
    expect(vcpu.guestOp({ op: 'pvalidate', gpa: 4 * GiB, level: PG_LEVEL_4K, validate: true })).toMatchObject({ ret: 0 });
    expect(vcpu.guestWrite(4 * GiB, 8, 1n, true)).toEqual({});
    expect(b.checkInvariants!()).toEqual([]);
    // update_mem_attr's RMPUPDATE gave the guest the four pages, from the post hook
    expect(b.inspect!({ what: 'stats' })).toMatchObject({ rmp: { assignedPages: 4 }, backend: { attrRmpUpdates: 4 } });
    // private→shared: the post hook gives the pages back to the host
    vm.setMemoryAttributes({ address: 4 * GiB, size: 4 * PAGE_SIZE, attributes: 0, flags: 0 });
    expect((b.inspect!({ what: 'stats' }) as { rmp: { assignedPages: number } }).rmp.assignedPages).toBe(0);
    expect(b.checkInvariants!()).toEqual([]);
  });
});

describe('launch', () => {
  const GFN0 = (4 * GiB) / PAGE_SIZE;
  function userPage(fill: number) {
    return new Uint8Array(4096).fill(fill);
  }

  it('LAUNCH_START checks flags and policy', () => {
    const { vm } = snpVm();
    expect(() => vm.memoryEncryptOp({ cmd: 'snp_launch_update', gfn_start: GFN0, uaddr: 0, len: 4096, type: 1 })).toThrow(/EINVAL/);
    expect(() => vm.memoryEncryptOp({ cmd: 'snp_launch_start', policy: 0 })).toThrow(/EINVAL/);
    expect(() => vm.memoryEncryptOp({ cmd: 'snp_launch_start', policy: 0x30000, flags: 1 })).toThrow(/EINVAL/);
    expect(() => vm.memoryEncryptOp({ cmd: 'snp_launch_start', policy: 0x30000 | (1 << 18) })).toThrow(/EINVAL/);
    expect(vm.memoryEncryptOp({ cmd: 'snp_launch_start', policy: 0x30000 })).toEqual({ ret: 0 });
    expect(() => vm.memoryEncryptOp({ cmd: 'snp_launch_start', policy: 0x30000 })).toThrow(/EINVAL/);
  });

  it('measures pages, leaves them Guest-Valid, reports progress, and finishes with the VMSAs', () => {
    const { kvm, vm, b, hva } = snpVm({}, 2);
    const host = b.host;
    vm.memoryEncryptOp({ cmd: 'snp_launch_start' });
    vm.setMemoryAttributes({ address: 4 * GiB, size: 4 * PAGE_SIZE, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE, flags: 0 });
    const src = hva + 0x10000;
    kvm.process.mm.writeBytes(src, userPage(0x11));
    kvm.process.mm.writeBytes(src + 0x1000, userPage(0x22));
    kvm.process.mm.writeBytes(src + 0x2000, userPage(0x33));
    expect(() => vm.memoryEncryptOp({ cmd: 'snp_launch_update', gfn_start: GFN0, uaddr: src, len: 4096, type: 2 })).toThrow(/EINVAL/);
    expect(() => vm.memoryEncryptOp({ cmd: 'snp_launch_update', gfn_start: GFN0, uaddr: src, len: 100, type: 1 })).toThrow(/EINVAL/);
    const r1 = vm.memoryEncryptOp({ cmd: 'snp_launch_update', gfn_start: GFN0, uaddr: src, len: 2 * 4096, type: 1, flags: 0 });
    expect(r1).toEqual({ ret: 0, out: { gfn_start: GFN0 + 2, uaddr: src + 0x2000, len: 0, type: 1, flags: 0 } });
    // the page guest_memfd holds for gfn 1 is the one the firmware measured
    const pfn1 = vm.gmemPeekPfn(GFN0 + 1);
    expect(pfn1).toBeGreaterThanOrEqual(0);
    expect(host.rmp.inspect(pfn1)).toMatchObject({ assigned: true, immutable: false, validated: true, gpa: 4 * GiB + 0x1000, asid: b.asid });
    expect(vm.readPfn(pfn1, 0, 1)[0]).toBe(0x22);
    // gfn 4 is not private: the 2 pages before it are done, progress is returned
    const r2 = vm.memoryEncryptOp({ cmd: 'snp_launch_update', gfn_start: GFN0 + 2, uaddr: 0, len: 3 * 4096, type: 3 });
    expect(r2.out).toMatchObject({ gfn_start: GFN0 + 4, len: 4096, uaddr: 0 });
    const before = host.rmp.assignedPages;
    expect(() => vm.memoryEncryptOp({ cmd: 'snp_launch_update', gfn_start: GFN0 + 4, uaddr: 0, len: 4096, type: 3 })).toThrow(/EIO/);
    expect(host.rmp.assignedPages).toBe(before);
    // an already-measured page cannot be measured again
    expect(() => vm.memoryEncryptOp({ cmd: 'snp_launch_update', gfn_start: GFN0, uaddr: src + 0x2000, len: 4096, type: 1 })).toThrow(/EIO/);
    const fin = vm.memoryEncryptOp({ cmd: 'snp_launch_finish' });
    const ref = new LaunchDigest();
    ref.update(1, 4 * GiB, userPage(0x11));
    ref.update(1, 4 * GiB + 0x1000, userPage(0x22));
    ref.update(3, 4 * GiB + 0x2000);
    ref.update(3, 4 * GiB + 0x3000);
    ref.update(2, INITIAL_VMSA_GPA, new Uint8Array(4096));
    ref.update(2, INITIAL_VMSA_GPA, new Uint8Array(4096));
    expect(fin.out).toMatchObject({ launch_digest: ref.hex() });
    expect(b.preFaultAllowed()).toBe(true);
    const vmsa = fin.out!.vmsa_pfns!;
    expect(vmsa).toHaveLength(2);
    expect(host.rmp.inspect(vmsa[0]!)).toMatchObject({ assigned: true, vmsa: true, gpa: INITIAL_VMSA_GPA, asid: b.asid });
    expect(() => vm.memoryEncryptOp({ cmd: 'snp_launch_update', gfn_start: GFN0 + 3, uaddr: 0, len: 4096, type: 3 })).toThrow(/EIO/);
    expect(b.checkInvariants!()).toEqual([]);
    b.destroy!();
    expect(host.rmp.isAssigned(vmsa[0]!)).toBe(false);
  });
});

describe('VM options', () => {
  it('an unknown option is EINVAL at VM creation, naming the known ones', () => {
    const kvm = snpKvm();
    // @ts-expect-error a misspelled option is a compile error for a typed caller
    expect(() => kvm.createVm({ type: KVM_X86_SNP_VM, options: { rmptiming: 'prepare' } })).toThrow(/unknown snp VM option 'rmptiming' \(known options: directmap, rmpTiming, asid\)/);
    expect(() => kvm.createVm({ type: KVM_X86_SNP_VM, options: { rmpTiming: 'set-attributes' } })).not.toThrow();
  });

  it('a misspelled guest operation or argument does not compile', () => {
    const { vcpu } = snpVm();
    // @ts-expect-error 'pvalidte' is no SNP guest operation
    expect(vcpu.guestOp({ op: 'pvalidte', gpa: 0, level: PG_LEVEL_4K, validate: true })).toMatchObject({ errno: 'EINVAL' });
    // @ts-expect-error sizes are levels, not strings
    vcpu.guestOp({ op: 'pvalidate', gpa: 4 * GiB, level: '4K', validate: true });
    // @ts-expect-error psc_msr takes `operation`
    vcpu.guestOp({ op: 'psc_msr', gpa: 4 * GiB, op2: SNP_PAGE_STATE_PRIVATE });
  });
});
