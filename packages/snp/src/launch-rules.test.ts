/**
 * The SNP launch commands and the VM's command dispatch, one check at a time
 * (arch/x86/kvm/svm/sev.c: sev_mem_enc_ioctl(), snp_launch_start(), snp_launch_update(),
 * sev_gmem_post_populate(), snp_launch_finish(), sev_vm_destroy()). Found missing by mutation
 * testing (docs/testing.md).
 */
import { describe, expect, it } from 'vitest';
import { KVM_MEMORY_ATTRIBUTE_PRIVATE, KVM_X86_SNP_VM, PAGE_SIZE } from '@ccmem/core';
import { LaunchDigest, SNP_PAGE_TYPE_CPUID, SNP_PAGE_TYPE_SECRETS, SNP_PAGE_TYPE_UNMEASURED, SNP_PAGE_TYPE_ZERO } from './launch-digest.js';
import { SNP_POLICY_MASK_DEBUG, SNP_POLICY_MASK_RSVD_MBO, SNP_POLICY_MASK_SINGLE_SOCKET, SNP_POLICY_MASK_SMT } from './snp-backend.js';
import { GFN0, GPA0, snpKvm, snpVm } from './testing/snp-vm.js';

const errno = (code: string) => expect.objectContaining({ code });
const MBO = SNP_POLICY_MASK_RSVD_MBO;

function started() {
  const t = snpVm();
  t.vm.memoryEncryptOp({ cmd: 'snp_launch_start' });
  t.vm.setMemoryAttributes({ address: GPA0, size: 8 * PAGE_SIZE, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE, flags: 0 });
  return t;
}

describe('sev_mem_enc_ioctl() on an SNP VM', () => {
  it('before KVM_SEV_INIT2: the deprecated inits EINVAL, SEV launch commands ENOTTY, SNP_LAUNCH_UPDATE EINVAL, FINISH ENOTTY', () => {
    const { vm } = snpVm({ noInit2: true });
    expect(() => vm.memoryEncryptOp({ cmd: 'sev_init' } as never)).toThrow(errno('EINVAL'));
    expect(() => vm.memoryEncryptOp({ cmd: 'sev_es_init' } as never)).toThrow(errno('EINVAL'));
    for (const cmd of ['sev_launch_start', 'sev_launch_update_data', 'sev_launch_measure', 'sev_guest_status']) {
      expect(() => vm.memoryEncryptOp({ cmd } as never)).toThrow(errno('ENOTTY'));
    }
    expect(() => vm.memoryEncryptOp({ cmd: 'snp_launch_update', gfn_start: GFN0, uaddr: 0, len: PAGE_SIZE, type: SNP_PAGE_TYPE_ZERO })).toThrow(errno('EINVAL'));
    expect(() => vm.memoryEncryptOp({ cmd: 'snp_launch_finish' })).toThrow(errno('ENOTTY'));
    expect(() => vm.memoryEncryptOp({ cmd: 'bogus' } as never)).toThrow(errno('EINVAL'));
  });
});

describe('snp_launch_start()', () => {
  it('accepts every bit of SNP_POLICY_MASK_VALID, refuses any other and a policy without RSVD_MBO', () => {
    const all = 0xffff | SNP_POLICY_MASK_SMT | MBO | SNP_POLICY_MASK_DEBUG | SNP_POLICY_MASK_SINGLE_SOCKET;
    expect(snpVm().vm.memoryEncryptOp({ cmd: 'snp_launch_start', policy: all })).toEqual({ ret: 0 });
    for (const policy of [-1, MBO | (1 << 18), MBO + 2 ** 21, MBO + 2 ** 32, SNP_POLICY_MASK_SMT]) {
      expect(() => snpVm().vm.memoryEncryptOp({ cmd: 'snp_launch_start', policy })).toThrow(errno('EINVAL'));
    }
    const t = snpVm();
    t.vm.memoryEncryptOp({ cmd: 'snp_launch_start', policy: MBO });
    expect(t.b.inspect!({ what: 'launch' })).toMatchObject({ started: true, finished: false, policy: MBO, measuredPages: 0 });
  });
});

describe('snp_launch_update()', () => {
  it('needs the SNP context', () => {
    const { vm } = snpVm();
    expect(() => vm.memoryEncryptOp({ cmd: 'snp_launch_update', gfn_start: GFN0, uaddr: 0, len: PAGE_SIZE, type: SNP_PAGE_TYPE_ZERO })).toThrow(errno('EINVAL'));
  });

  it('page types: NORMAL, ZERO, UNMEASURED, SECRETS and CPUID; not VMSA (2), 0 or 7; flags must be 0', () => {
    const t = started();
    const src = t.hva;
    const up = (gfn: number, type: number, flags = 0) => t.vm.memoryEncryptOp({ cmd: 'snp_launch_update', gfn_start: GFN0 + gfn, uaddr: src, len: PAGE_SIZE, type, flags });
    for (const type of [0, 2, 7]) expect(() => up(0, type)).toThrow(errno('EINVAL'));
    expect(() => up(0, SNP_PAGE_TYPE_UNMEASURED, 1)).toThrow(errno('EINVAL'));
    up(0, SNP_PAGE_TYPE_UNMEASURED);
    up(1, SNP_PAGE_TYPE_SECRETS);
    up(2, SNP_PAGE_TYPE_CPUID);
    // the three are measured without their contents (SNP firmware ABI PAGE_INFO.CONTENTS = 0)
    const ref = new LaunchDigest();
    ref.update(SNP_PAGE_TYPE_UNMEASURED, GPA0);
    ref.update(SNP_PAGE_TYPE_SECRETS, GPA0 + PAGE_SIZE);
    ref.update(SNP_PAGE_TYPE_CPUID, GPA0 + 2 * PAGE_SIZE);
    expect(t.b.inspect!({ what: 'launch' })).toMatchObject({ digest: ref.hex(), measuredPages: 3 });
  });

  it('a gfn outside any guest_memfd memslot is EINVAL; after LAUNCH_FINISH every update is EIO', () => {
    const t = started();
    expect(() => t.vm.memoryEncryptOp({ cmd: 'snp_launch_update', gfn_start: 0x10, uaddr: 0, len: PAGE_SIZE, type: SNP_PAGE_TYPE_ZERO })).toThrow(errno('EINVAL'));
    t.vm.memoryEncryptOp({ cmd: 'snp_launch_finish' });
    expect(() => t.vm.memoryEncryptOp({ cmd: 'snp_launch_update', gfn_start: GFN0, uaddr: 0, len: PAGE_SIZE, type: SNP_PAGE_TYPE_ZERO })).toThrow(errno('EIO'));
  });

  it('an already private RMP entry stops the update (sev_gmem_post_populate(): not in the initial shared state)', () => {
    const t = started();
    t.vm.memoryEncryptOp({ cmd: 'snp_launch_update', gfn_start: GFN0, uaddr: 0, len: PAGE_SIZE, type: SNP_PAGE_TYPE_ZERO });
    // two pages from gfn 0: gfn 0 is done already, so nothing is done and the error is returned
    expect(() => t.vm.memoryEncryptOp({ cmd: 'snp_launch_update', gfn_start: GFN0, uaddr: 0, len: 2 * PAGE_SIZE, type: SNP_PAGE_TYPE_ZERO })).toThrow(errno('EIO'));
    // from gfn 1 the two pages go through
    const r = t.vm.memoryEncryptOp({ cmd: 'snp_launch_update', gfn_start: GFN0 + 1, uaddr: 0, len: 2 * PAGE_SIZE, type: SNP_PAGE_TYPE_ZERO });
    expect(r.out).toMatchObject({ gfn_start: GFN0 + 3, len: 0 });
    expect(t.b.inspect!({ what: 'launch' })).toMatchObject({ measuredPages: 3 });
  });
});

describe('snp_launch_finish()', () => {
  it('a VMSA page RMPUPDATE refuses fails the command with rmpupdate()\'s -EFAULT; the VMSA stays shared and FINISH can be retried', () => {
    const t = snpVm();
    t.vm.memoryEncryptOp({ cmd: 'snp_launch_start' });
    t.host.injectResult('rmpupdate', 3);
    expect(() => t.vm.memoryEncryptOp({ cmd: 'snp_launch_finish' })).toThrow(errno('EFAULT'));
    expect(t.host.stats).toMatchObject({ rmpupdateFailures: 1, leakedPages: 0 });
    expect(t.b.inspect!({ what: 'launch' })).toMatchObject({ finished: false, vmsaPfns: [] });
    const out = t.vm.memoryEncryptOp({ cmd: 'snp_launch_finish' }).out!;
    expect(t.host.rmp.inspect(out.vmsa_pfns![0]!)).toMatchObject({ assigned: true, vmsa: true });
  });

  it('a failure at the second vCPU keeps the first VMSA private and measured (nothing undone); a retry stops at the protected boot vCPU', () => {
    // snp_launch_update_vmsa(): per vCPU rmp_make_private() then SNP_LAUNCH_UPDATE, returning
    // at the first error; sev_es_sync_vmsa() refuses a vCPU whose state is already protected
    const t = snpVm({ vcpus: 2 });
    t.vm.memoryEncryptOp({ cmd: 'snp_launch_start' });
    t.host.injectResult('rmpupdate', 3, 1, 1);
    expect(() => t.vm.memoryEncryptOp({ cmd: 'snp_launch_finish' })).toThrow(errno('EFAULT'));
    const launch = t.b.inspect!({ what: 'launch' }) as { finished: boolean; vmsaPfns: number[]; measuredPages: number };
    expect(launch).toMatchObject({ finished: false, measuredPages: 1 });
    expect(launch.vmsaPfns).toHaveLength(1);
    expect(t.host.rmp.inspect(launch.vmsaPfns[0]!)).toMatchObject({ assigned: true, vmsa: true, validated: true, immutable: false });
    expect(t.host.stats).toMatchObject({ rmpupdates: 1, rmpupdateFailures: 1, leakedPages: 0 });
    expect(() => t.vm.memoryEncryptOp({ cmd: 'snp_launch_finish' })).toThrow(errno('EINVAL'));
    expect(t.host.stats).toMatchObject({ rmpupdates: 1, rmpupdateFailures: 1 });
    t.b.destroy!();
    expect(t.b.checkAfterDestroy!()).toEqual([]);
  });

  it('needs the SNP context, flags 0, and runs once', () => {
    const { vm } = snpVm();
    expect(() => vm.memoryEncryptOp({ cmd: 'snp_launch_finish' })).toThrow(errno('EINVAL'));
    vm.memoryEncryptOp({ cmd: 'snp_launch_start' });
    expect(() => vm.memoryEncryptOp({ cmd: 'snp_launch_finish', flags: 1 })).toThrow(errno('EINVAL'));
    const out = vm.memoryEncryptOp({ cmd: 'snp_launch_finish' }).out!;
    expect(() => vm.memoryEncryptOp({ cmd: 'snp_launch_finish' })).toThrow(errno('EIO'));
    expect((vm.backend as unknown as { inspect(q: { what: 'launch' }): { vmsaPfns: number[]; finished: boolean } }).inspect({ what: 'launch' })).toMatchObject({
      finished: true,
      vmsaPfns: out.vmsa_pfns,
    });
  });

  it('the VMSA pages go back once, however often the VM is destroyed', () => {
    const t = snpVm();
    t.vm.memoryEncryptOp({ cmd: 'snp_launch_start' });
    t.vm.memoryEncryptOp({ cmd: 'snp_launch_finish' });
    const phys = t.kvm.process.phys;
    const before = phys.allocatedPages;
    expect(t.b.checkAfterDestroy!()).toEqual(expect.arrayContaining([
      expect.stringMatching(/^pfn 0x[0-9a-f]+ still assigned to ASID \d+ in the RMP \(never made shared\)$/),
      '1 VMSA pages not given back',
      expect.stringMatching(/^ASID \d+ still bound \(sev_asid_free\(\) did not run\)$/),
    ]));
    t.b.destroy!();
    expect(t.b.checkAfterDestroy!()).toEqual([]);
    expect(phys.allocatedPages).toBe(before - 1);
    expect(() => t.b.destroy!()).not.toThrow();
    expect(phys.allocatedPages).toBe(before - 1);
    // a shared frame the direct map lost is a leak too (the host cannot touch it)
    const stray = phys.allocPage();
    t.b.host.directmap.unmap(stray, 1);
    expect(t.b.checkAfterDestroy!()).toEqual([`shared pfn 0x${stray.toString(16)} is missing from the direct map (set_direct_map_default_noflush() did not run)`]);
  });
});

describe('the SNP VM options and inspect', () => {
  it('directmap, rmpTiming and asid are checked at KVM_CREATE_VM', () => {
    const kvm = snpKvm();
    expect(() => kvm.createVm({ type: KVM_X86_SNP_VM, options: { directmap: 'bogus' as never } })).toThrow(errno('EINVAL'));
    expect(() => kvm.createVm({ type: KVM_X86_SNP_VM, options: { rmpTiming: 'bogus' as never } })).toThrow(errno('EINVAL'));
    expect(() => kvm.createVm({ type: KVM_X86_SNP_VM, options: { asid: 1.5 } })).toThrow(errno('EINVAL'));
    const vm = kvm.createVm({ type: KVM_X86_SNP_VM, options: { directmap: 'unmap', rmpTiming: 'set-attributes', asid: 7 } });
    vm.memoryEncryptOp({ cmd: 'sev_init2' });
    expect((vm.backend as unknown as { inspect(q: { what: 'stats' }): unknown }).inspect({ what: 'stats' })).toMatchObject({ asid: 7, directmap: 'unmap', rmpTiming: 'set-attributes' });
  });

  it("inspect 'sev' is kvm_sev_info after KVM_SEV_INIT2; an unknown query answers nothing", () => {
    const t = snpVm();
    expect(t.b.inspect!({ what: 'sev' })).toEqual({ active: true, es_active: true, need_init: false, asid: t.b.asid, vmsa_features: 1, ghcb_version: 2 });
    expect(t.b.inspect!({ what: 'bogus' } as never)).toBeUndefined();
  });
});
