import { afterEach, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { countCpuList, hiddenCapabilities, readKvmModuleFacts } from './host-facts.js';

let root: string | null = null;
function tree(files: Record<string, string>): string {
  root = mkdtempSync(join(tmpdir(), 'ccmem-sysfs-'));
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(dirname(join(root, path)), { recursive: true });
    writeFileSync(join(root, path), text + '\n');
  }
  return root;
}
afterEach(() => {
  if (root) rmSync(root, { recursive: true, force: true });
  root = null;
});

describe('readKvmModuleFacts', () => {
  it('a PVM host: shadow paging, so the largest gfn follows 52 bits whatever the CPU reports', () => {
    const r = tree({
      'sys/module/kvm/parameters/tdp_mmu': 'N',
      'sys/module/kvm/parameters/eager_page_split': 'Y',
      'sys/module/kvm/parameters/mmio_caching': 'N',
      'sys/module/kvm/parameters/nx_huge_pages': 'N',
      'sys/module/kvm_pvm/parameters/pvm_native': 'Y',
      'proc/cpuinfo': 'processor\t: 0\naddress sizes\t: 46 bits physical, 48 bits virtual',
      'sys/devices/system/cpu/online': '0-1',
      'dev/kvm': '',
    });
    const f = readKvmModuleFacts(r);
    expect(f.device).toBe(true);
    expect(f.vendorModules).toEqual(['kvm_pvm']);
    expect(f.tdpEnabled).toBe(false);
    expect(f.mmu).toBe('shadow');
    expect(f.mmioCaching).toBe(false);
    expect(f.eagerPageSplit).toBe(true);
    expect(f.physAddrBits).toBe(46);
    expect(f.maxGfn).toBe(2 ** 40 - 1);
    expect(f.onlineCpus).toBe(2);
    expect(f.params.tdp_mmu).toBe('N');
  });

  it('an Intel host with EPT and the TDP MMU: the largest gfn follows MAXPHYADDR', () => {
    const r = tree({
      'sys/module/kvm/parameters/tdp_mmu': 'Y',
      'sys/module/kvm_intel/parameters/ept': 'Y',
      'proc/cpuinfo': 'address sizes\t: 39 bits physical, 48 bits virtual',
    });
    const f = readKvmModuleFacts(r);
    expect(f.device).toBe(false);
    expect(f.mmu).toBe('tdp_mmu');
    expect(f.maxGfn).toBe(2 ** 27 - 1);
    expect(f.onlineCpus).toBeNull();
  });

  it('an AMD host with NPT but tdp_mmu=N runs TDP on the shadow MMU structures', () => {
    const r = tree({ 'sys/module/kvm/parameters/tdp_mmu': 'N', 'sys/module/kvm_amd/parameters/npt': '1' });
    expect(readKvmModuleFacts(r).mmu).toBe('tdp');
  });

  it('no KVM modules: nothing is guessed', () => {
    const f = readKvmModuleFacts(tree({ 'proc/cpuinfo': 'flags\t: fpu' }));
    expect(f.vendorModules).toEqual([]);
    expect(f.mmu).toBeNull();
    expect(f.maxGfn).toBeNull();
    expect(f.physAddrBits).toBeNull();
  });
});

describe('helpers', () => {
  it('counts a cpu list', () => {
    expect(countCpuList('0-3,5,7-8')).toBe(7);
    expect(countCpuList('0')).toBe(1);
  });
  it('CCMEM_KVM_HIDE names capabilities to hide', () => {
    expect([...hiddenCapabilities({ CCMEM_KVM_HIDE: 'KVM_CAP_GUEST_MEMFD, KVM_CAP_MEMORY_ATTRIBUTES,' })]).toEqual([
      'KVM_CAP_GUEST_MEMFD',
      'KVM_CAP_MEMORY_ATTRIBUTES',
    ]);
    expect(hiddenCapabilities({}).size).toBe(0);
  });
});
