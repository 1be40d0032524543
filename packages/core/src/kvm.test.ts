import { describe, expect, it } from 'vitest';
import { Kvm } from './kvm.js';
import { Process } from './host/process.js';
import { PhysMem } from './host/phys-mem.js';
import { SptPool, WORDS_PER_TABLE } from './mmu/spt-pool.js';
import { PAGE_SIZE } from './uapi.js';

const RW = { read: true, write: true };

describe('dispose: buffers go back for reuse, zeroed, and the disposed object is dead', () => {
  it('SptPool: a later pool gets the first chunk back zeroed; the disposed pool throws', () => {
    const a = new SptPool();
    const t = a.alloc(0, 4, -1, 0, false, false);
    const words = a.words(t);
    words.fill(-1, SptPool.base(t), SptPool.base(t) + WORDS_PER_TABLE);
    a.dispose();
    expect(a.chunks.length).toBe(0);
    expect(() => a.alloc(0, 4, -1, 0, false, true)).toThrow(/disposed/);
    expect(() => a.release(t)).toThrow(/disposed/);

    const b = new SptPool();
    const u = b.alloc(0, 4, -1, 0, false, false);
    expect(b.words(u)).toBe(words); // the recycled chunk
    expect(b.words(u).every((w) => w === 0)).toBe(true); // as a fresh ArrayBuffer
    // a second disposal of the first pool gives nothing back twice
    a.dispose();
    const c = new SptPool();
    c.alloc(0, 4, -1, 0, false, false);
    expect(c.words(0)).not.toBe(words);
  });

  it('PhysMem and AddressSpace: a later process reads zeros from recycled storage', () => {
    const p1 = new Process();
    const hva = p1.mm.mmap({ length: 4 * PAGE_SIZE, prot: RW, shared: false });
    for (let i = 0; i < 4; i++) p1.mm.write(hva + i * PAGE_SIZE, 8, 0x1122334455667788n + BigInt(i));
    const pfn = p1.phys.allocPage();
    p1.phys.writeValue(pfn, 0, 8, 0xdeadbeefn);
    p1.dispose();
    expect(() => p1.phys.allocPage()).toThrow(/disposed/);
    expect(() => p1.phys.readValue(pfn, 0, 8)).toThrow(/disposed/);
    expect(() => p1.mm.read(hva, 8)).toThrow(/disposed/);
    expect(() => p1.mm.mmap({ length: PAGE_SIZE, prot: RW, shared: false })).toThrow(/disposed/);
    expect(() => p1.openFds()).toThrow(/disposed/);

    const p2 = new Process();
    const hva2 = p2.mm.mmap({ length: 4 * PAGE_SIZE, prot: RW, shared: false });
    expect(hva2).toBe(hva);
    for (let i = 0; i < 4; i++) expect(p2.mm.read(hva2 + i * PAGE_SIZE, 8)).toBe(0n);
    expect(p2.mm.anonPageCount).toBe(0);
    const q = p2.phys.allocPage();
    expect(p2.phys.readValue(q, 0, 8)).toBe(0n);
    p2.mm.write(hva2, 8, 7n);
    expect(p2.mm.read(hva2, 8)).toBe(7n);
    expect(p2.mm.read(hva2 + PAGE_SIZE, 8)).toBe(0n);
  });

  it('PhysMem: recycled frame bookkeeping starts as never allocated', () => {
    const a = new PhysMem();
    const pfns = [a.allocPage(), a.allocPage(), a.allocPage()];
    a.leakPage(pfns[1]!);
    a.dispose();
    const b = new PhysMem();
    for (const p of pfns) {
      expect(b.isAllocated(p)).toBe(false);
      expect(b.isLeaked(p)).toBe(false);
    }
    expect(b.allocPage()).toBe(pfns[0]);
  });

  it('Kvm: releases the open VMs\' page tables and the process; nothing can be used afterwards', () => {
    const kvm = new Kvm();
    const vm = kvm.createVm();
    expect(vm.mmu.tableCount).toBeGreaterThan(0);
    kvm.dispose();
    expect(() => kvm.createVm()).toThrow(/disposed/);
    expect(() => kvm.process.openFds()).toThrow(/disposed/);
    expect(vm.mmu.poolChunkCount).toBe(0);
    kvm.dispose(); // idempotent

    const kvm2 = new Kvm();
    const vm2 = kvm2.createVm();
    expect(vm2.mmu.tableCount).toBe(1);
    expect(kvm2.process.openFds()).toEqual([vm2.fd]);
  });
});

describe('profileMismatch: is a detected host the kernel a named profile describes', () => {
  it('matches a profile with itself, ignores machine facts, and names the first build difference', async () => {
    const { profileMismatch, PROFILES, LINUX_6_18_PVM_NO_GMEM_PROFILE } = await import('./profile.js');
    for (const p of Object.values(PROFILES)) expect(profileMismatch(p, p)).toBeNull();
    const host = { ...LINUX_6_18_PVM_NO_GMEM_PROFILE, name: 'host-x', onlineCpus: 2, hostMaxPhyAddr: 46 };
    expect(profileMismatch(LINUX_6_18_PVM_NO_GMEM_PROFILE, host)).toBeNull();
    // guest_memfd behaviour is not compared on a kernel without guest_memfd
    expect(profileMismatch(LINUX_6_18_PVM_NO_GMEM_PROFILE, { ...host, gmemOnlySharedFaults: true, gmemBindOverlapErrno: 'EEXIST' as const })).toBeNull();
    expect(profileMismatch(PROFILES['linux-6.18-pvm']!, host)).toBe('guestMemfd is false on this host, true in linux-6.18-pvm');
    // an absent field reads as its documented default
    expect(profileMismatch(PROFILES.upstream!, { ...PROFILES.upstream!, name: 'h', tdpEnabled: true, mmioCaching: true })).toBeNull();
    expect(profileMismatch(PROFILES.upstream!, { ...PROFILES.upstream!, name: 'h', tdpMmu: false })).toBe('tdpMmu is false on this host, true in upstream');
    // vendor rules count only where the host offers the vendor's VM type
    expect(profileMismatch(PROFILES['linux-6.18']!, { ...PROFILES['linux-6.18']!, name: 'h', snpLaunchUpdateUaddrChecks: true })).toMatch(/^snpLaunchUpdateUaddrChecks/);
  });
});
