/**
 * `ccmem host [--json]`: what this machine's KVM is (kernel release, vendor module, MMU and its
 * parameters, capabilities, VM types, the largest gfn) and what the real-KVM target can and
 * cannot run here, with the reason. Without /dev/kvm it reports what sysfs tells and says so.
 */
import type { CliIo } from '../io.js';
import { EXIT_OK, toJson } from './shared.js';

/** A feature of scenario files and the capability (or host fact) the real-KVM target needs for it. */
interface HostFeature {
  feature: string;
  ok: boolean;
  reason?: string;
}

export interface HostJson {
  release: string;
  device: boolean;
  vendor_modules: string[];
  mmu: string | null;
  tdp_enabled: boolean | null;
  eager_page_split: boolean | null;
  nx_huge_pages: boolean | null;
  mmio_caching: boolean | null;
  params: Record<string, string>;
  phys_addr_bits: number | null;
  max_gfn: number | null;
  max_gpa_bits: number | null;
  max_gfn_source: 'probe' | 'sysfs' | null;
  online_cpus: number | null;
  guest_memfd: boolean;
  guest_memfd_flags: number;
  hidden: string[];
  capabilities: Record<string, number>;
  vm_types: string[];
  profile: Record<string, unknown> | null;
  features: HostFeature[];
}

type Report = Awaited<ReturnType<typeof loadReport>>;

async function loadReport() {
  // the sysfs facts need no libc; the full report (ioctls on /dev/kvm) loads @ccmem/kvm only
  // when the device is there
  const { sysfsHostReport } = await import('@ccmem/kvm/host-facts');
  const base = sysfsHostReport();
  if (!base.device) return { ...base, profile: null };
  const kvm = await import('@ccmem/kvm');
  return kvm.hostKvmReport();
}

function hostFeatures(r: Report): HostFeature[] {
  if (!r.device) return [{ feature: 'the real-KVM target', ok: false, reason: '/dev/kvm is missing: this host has no KVM' }];
  const caps = r.capabilities;
  const cap = (feature: string, name: string): HostFeature =>
    caps[name] ? { feature, ok: true } : { feature, ok: false, reason: `host: no ${name}` };
  const out: HostFeature[] = [
    { feature: 'memslots, dirty log, guest accesses, MMIO exits (default VM)', ok: true },
    cap('KVM_SET_USER_MEMORY_REGION2', 'KVM_CAP_USER_MEMORY2'),
    r.guestMemfd ? { feature: 'guest_memfd', ok: true } : { feature: 'guest_memfd', ok: false, reason: 'host: no KVM_CAP_GUEST_MEMFD' },
    cap('KVM_SET_MEMORY_ATTRIBUTES', 'KVM_CAP_MEMORY_ATTRIBUTES'),
    cap('KVM_PRE_FAULT_MEMORY', 'KVM_CAP_PRE_FAULT_MEMORY'),
    cap('KVM_CLEAR_DIRTY_LOG (manual protect)', 'KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2'),
    cap('the dirty ring (KVM_RESET_DIRTY_RINGS, KVM_EXIT_DIRTY_RING_FULL)', 'KVM_CAP_DIRTY_LOG_RING'),
    (caps.KVM_CAP_MULTI_ADDRESS_SPACE ?? 0) > 1
      ? { feature: 'address space 1 (SMM)', ok: true }
      : { feature: 'address space 1 (SMM)', ok: false, reason: 'host: KVM_CAP_MULTI_ADDRESS_SPACE is 1' },
  ];
  for (const type of ['KVM_X86_SW_PROTECTED_VM', 'KVM_X86_SEV_VM', 'KVM_X86_SEV_ES_VM', 'KVM_X86_SNP_VM', 'KVM_X86_TDX_VM']) {
    out.push({
      feature: type,
      ok: false,
      reason: r.vmTypes.includes(type)
        ? 'the real-KVM target runs default VMs only (its tiny guest is not a confidential guest)'
        : `host: KVM_CAP_VM_TYPES has no ${type}`,
    });
  }
  return out;
}

export function hostJson(r: Report): HostJson {
  return {
    release: r.release,
    device: r.device,
    vendor_modules: r.vendorModules,
    mmu: r.mmu,
    tdp_enabled: r.tdpEnabled,
    eager_page_split: r.eagerPageSplit,
    nx_huge_pages: r.nxHugePages,
    mmio_caching: r.mmioCaching,
    params: r.params,
    phys_addr_bits: r.physAddrBits,
    max_gfn: r.maxGfn,
    max_gpa_bits: r.maxGfn === null ? null : Math.log2(r.maxGfn + 1) + 12,
    max_gfn_source: r.maxGfnSource,
    online_cpus: r.onlineCpus,
    guest_memfd: r.guestMemfd,
    guest_memfd_flags: r.guestMemfdFlags,
    hidden: r.hidden,
    capabilities: r.capabilities,
    vm_types: r.vmTypes,
    profile: r.profile ? { ...r.profile } : null,
    features: hostFeatures(r),
  };
}

export async function hostCommand(io: CliIo, opts: { json?: boolean }): Promise<number> {
  const j = hostJson(await loadReport());
  if (opts.json) {
    io.out(toJson(j));
    return EXIT_OK;
  }
  const c = io.color;
  const yn = (v: boolean | null) => (v === null ? 'unknown' : v ? 'yes' : 'no');
  const lines = [
    `kernel        ${j.release}`,
    `/dev/kvm      ${j.device ? 'present' : c.yellow('missing: the real-KVM target cannot run here')}`,
    `modules       ${j.vendor_modules.length ? j.vendor_modules.join(', ') : 'no KVM vendor module loaded'}`,
    `mmu           ${j.mmu ?? 'unknown'}${j.tdp_enabled === null ? '' : j.tdp_enabled ? ' (EPT/NPT on)' : ' (no EPT/NPT: shadow paging)'}`,
    `parameters    eager_page_split=${yn(j.eager_page_split)} nx_huge_pages=${yn(j.nx_huge_pages)} mmio_caching=${yn(j.mmio_caching)} tdp_mmu=${j.params.tdp_mmu ?? '-'}`,
    `largest gfn   ${j.max_gfn === null ? 'unknown' : `0x${j.max_gfn.toString(16)} (${j.max_gpa_bits}-bit gpa, from ${j.max_gfn_source})`}`,
    `online cpus   ${j.online_cpus ?? 'unknown'}`,
  ];
  if (j.device) {
    lines.push(`guest_memfd   ${j.guest_memfd ? `yes (flags 0x${j.guest_memfd_flags.toString(16)})` : 'no'}`);
    lines.push(`vm types      ${j.vm_types.join(', ')}`);
    if (j.profile) {
      const emulated = j.profile.emulatedGuestAccesses === true;
      lines.push(`guest code    ${emulated ? 'runs in the instruction emulator (no page faults; profile emulatedGuestAccesses)' : 'runs on the CPU'}`);
    }
    if (j.hidden.length) lines.push(`hidden        ${j.hidden.join(', ')} (CCMEM_KVM_HIDE)`);
    lines.push('capabilities');
    for (const [name, v] of Object.entries(j.capabilities)) lines.push(`  ${name.padEnd(36)} ${v}`);
  }
  lines.push('the real-KVM target here');
  for (const f of j.features) lines.push(`  ${f.ok ? c.green('can   ') : c.yellow('cannot')} ${f.feature}${f.reason ? `  (${f.reason})` : ''}`);
  io.out(lines.join('\n'));
  return EXIT_OK;
}
