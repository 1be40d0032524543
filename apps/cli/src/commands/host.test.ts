import { existsSync, readFileSync } from 'node:fs';
import { release } from 'node:os';
import { describe, expect, it } from 'vitest';
import { ccmem } from '../../test-support/ccmem-process.js';
import type { HostJson } from './host.js';

const ccmemHost = (args: string[], env: Record<string, string> = {}) => ccmem(['host', ...args], { env: { NO_COLOR: '1', ...env } });

/** a sysfs bool read here, independently of the code under test */
function sysBool(path: string): boolean | null {
  if (!existsSync(path)) return null;
  const v = readFileSync(path, 'utf8').trim();
  return v === 'Y' || v === '1' ? true : v === 'N' || v === '0' ? false : null;
}

describe('ccmem host', () => {
  const hasKvm = existsSync('/dev/kvm');
  if (!hasKvm) console.warn('ccmem host: /dev/kvm is missing here; only the sysfs part of the report is checked');

  it('--json reports this host as sysfs and /dev/kvm show it', () => {
    const r = ccmemHost(['--json']);
    expect(r.code, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout) as HostJson;
    expect(j.release).toBe(release());
    expect(j.device).toBe(hasKvm);
    expect(j.mmio_caching).toBe(sysBool('/sys/module/kvm/parameters/mmio_caching'));
    expect(j.eager_page_split).toBe(sysBool('/sys/module/kvm/parameters/eager_page_split'));
    expect(j.vendor_modules).toEqual(['kvm_intel', 'kvm_amd', 'kvm_pvm'].filter((m) => existsSync(`/sys/module/${m}`)));
    if (j.tdp_enabled === false) {
      // kvm_mmu_max_gfn(): 52 bits under shadow paging
      expect(j.mmu).toBe('shadow');
      if (j.max_gfn_source === 'sysfs') expect(j.max_gpa_bits).toBe(52);
    }
    if (hasKvm) {
      // the capabilities are KVM_CHECK_EXTENSION's answers; guest_memfd needs its capability
      expect(j.capabilities.KVM_CAP_USER_MEMORY2).toBeTypeOf('number');
      if (!j.capabilities.KVM_CAP_GUEST_MEMFD) expect(j.guest_memfd).toBe(false);
      expect(j.vm_types).toContain('KVM_X86_DEFAULT_VM');
      expect(j.profile).not.toBeNull();
    } else {
      expect(j.features).toEqual([{ feature: 'the real-KVM target', ok: false, reason: '/dev/kvm is missing: this host has no KVM' }]);
      expect(j.capabilities).toEqual({});
    }
  });

  it('CCMEM_KVM_HIDE hides a capability from detection', () => {
    const j = JSON.parse(ccmemHost(['--json'], { CCMEM_KVM_HIDE: 'KVM_CAP_GUEST_MEMFD' }).stdout) as HostJson;
    expect(j.hidden).toEqual(['KVM_CAP_GUEST_MEMFD']);
    expect(j.guest_memfd).toBe(false);
    if (hasKvm) expect(j.capabilities.KVM_CAP_GUEST_MEMFD).toBe(0);
  });

  it('prints a readable report', () => {
    const r = ccmemHost([]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`kernel        ${release()}`);
    expect(r.stdout).toContain('the real-KVM target here');
  });
});
