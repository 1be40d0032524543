/**
 * What a host's KVM is, read without opening /dev/kvm: the kernel release, which KVM modules
 * are loaded, their parameters, the MMU they run, the host's physical-address width and the
 * largest gfn a memslot may reach. Everything comes from sysfs and procfs (`root` lets tests
 * point at a tree of their own); nothing here loads libc.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { release } from 'node:os';
import { join } from 'node:path';

/** The vendor modules that provide /dev/kvm on x86. */
export const KVM_VENDOR_MODULES = ['kvm_intel', 'kvm_amd', 'kvm_pvm'] as const;
export type KvmVendorModule = (typeof KVM_VENDOR_MODULES)[number];

/** Which MMU builds the guest's page tables (arch/x86/kvm/mmu/mmu.c kvm_configure_mmu()). */
export type KvmMmuKind = 'tdp_mmu' | 'tdp' | 'shadow';

export interface KvmModuleFacts {
  /** `uname -r` */
  release: string;
  /** /dev/kvm exists */
  device: boolean;
  /** the loaded vendor modules */
  vendorModules: KvmVendorModule[];
  /** every kvm.ko parameter as sysfs prints it (`tdp_mmu: "Y"`, `nx_huge_pages: "N"`, ...) */
  params: Record<string, string>;
  /** EPT (kvm_intel `ept`) or NPT (kvm_amd `npt`) is on; false for PVM (shadow paging); null when unknown */
  tdpEnabled: boolean | null;
  /** the MMU: the TDP MMU, TDP on the shadow MMU's structures (`tdp_mmu=N`), or shadow paging; null when unknown */
  mmu: KvmMmuKind | null;
  /** `eager_page_split`, `nx_huge_pages`, `mmio_caching` as booleans (null when the parameter is absent) */
  eagerPageSplit: boolean | null;
  nxHugePages: boolean | null;
  mmioCaching: boolean | null;
  /** the host's MAXPHYADDR (/proc/cpuinfo "address sizes"), null when not reported */
  physAddrBits: number | null;
  /**
   * kvm_mmu_max_gfn() (arch/x86/kvm/mmu.h): the host MAXPHYADDR with TDP, 52 bits with
   * shadow paging; a memslot whose last gfn is above it is EINVAL. null when unknown.
   */
  maxGfn: number | null;
  /** online CPUs (KVM_CAP_NR_VCPUS is this, capped at KVM_MAX_VCPUS) */
  onlineCpus: number | null;
}

function readText(path: string): string | null {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return null;
  }
}

/** a sysfs bool parameter: Y/N (or 1/0); null when absent or not a bool ("auto", "force", ...) */
function paramBool(v: string | undefined): boolean | null {
  if (v === undefined) return null;
  if (v === 'Y' || v === '1') return true;
  if (v === 'N' || v === '0') return false;
  return null;
}

/** "0-3,5,7-8" → 7 */
export function countCpuList(list: string): number {
  let n = 0;
  for (const part of list.split(',')) {
    if (!part) continue;
    const [a, b] = part.split('-').map(Number);
    if (a === undefined || Number.isNaN(a)) continue;
    n += b === undefined || Number.isNaN(b) ? 1 : b - a + 1;
  }
  return n;
}

export function readKvmModuleFacts(root = '/'): KvmModuleFacts {
  const mod = (name: string) => join(root, 'sys/module', name);
  const params: Record<string, string> = {};
  const paramDir = join(mod('kvm'), 'parameters');
  if (existsSync(paramDir)) {
    for (const name of readdirSync(paramDir).sort()) {
      const v = readText(join(paramDir, name));
      if (v !== null) params[name] = v;
    }
  }
  const vendorModules = KVM_VENDOR_MODULES.filter((m) => existsSync(mod(m)));
  let tdpEnabled: boolean | null = null;
  if (vendorModules.includes('kvm_intel')) tdpEnabled = paramBool(readText(join(mod('kvm_intel'), 'parameters/ept')) ?? undefined);
  else if (vendorModules.includes('kvm_amd')) tdpEnabled = paramBool(readText(join(mod('kvm_amd'), 'parameters/npt')) ?? undefined);
  else if (vendorModules.includes('kvm_pvm')) tdpEnabled = false;
  const tdpMmu = paramBool(params.tdp_mmu);
  // kvm_configure_mmu(): tdp_mmu_enabled = tdp_mmu_allowed && tdp_enabled
  const mmu: KvmMmuKind | null = tdpEnabled === false ? 'shadow' : tdpEnabled === true ? (tdpMmu ? 'tdp_mmu' : 'tdp') : null;
  const cpuinfo = readText(join(root, 'proc/cpuinfo'));
  const m = cpuinfo?.match(/address sizes\s*:\s*(\d+) bits physical/);
  const physAddrBits = m ? Number(m[1]) : null;
  const maxGpaBits = tdpEnabled === false ? 52 : tdpEnabled === true ? physAddrBits : null;
  const online = readText(join(root, 'sys/devices/system/cpu/online'));
  return {
    release: release(),
    device: existsSync(join(root, 'dev/kvm')),
    vendorModules,
    params,
    tdpEnabled,
    mmu,
    eagerPageSplit: paramBool(params.eager_page_split),
    nxHugePages: paramBool(params.nx_huge_pages),
    mmioCaching: paramBool(params.mmio_caching),
    physAddrBits,
    maxGfn: maxGpaBits === null ? null : 2 ** (maxGpaBits - 12) - 1,
    onlineCpus: online === null ? null : countCpuList(online),
  };
}

/**
 * Capabilities hidden from detection by `CCMEM_KVM_HIDE` (a comma-separated list such as
 * `KVM_CAP_GUEST_MEMFD,KVM_CAP_MEMORY_ATTRIBUTES`): a host that has them is then treated as one
 * that lacks them, so the skip paths of a host without them run here too (docs/kvm.md).
 */
export function hiddenCapabilities(env: NodeJS.ProcessEnv = process.env): ReadonlySet<string> {
  return new Set(
    (env.CCMEM_KVM_HIDE ?? '')
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean),
  );
}

/**
 * What `ccmem host` reports before any ioctl: the module facts, with the fields only
 * /dev/kvm can answer left empty (host-report.ts fills them where the device exists).
 */
export interface SysfsHostReport extends KvmModuleFacts {
  /** capabilities hidden from detection by CCMEM_KVM_HIDE */
  hidden: string[];
  /** KVM_CHECK_EXTENSION answers of a default VM (empty without /dev/kvm) */
  capabilities: Record<string, number>;
  /** VM types KVM_CAP_VM_TYPES offers, by name */
  vmTypes: string[];
  /** KVM_CREATE_GUEST_MEMFD exists (KVM_CAP_GUEST_MEMFD) and KVM_MEM_GUEST_MEMFD is a valid flag */
  guestMemfd: boolean;
  guestMemfdFlags: number;
  /** where maxGfn came from: a memslot probe on /dev/kvm, or sysfs/cpuinfo */
  maxGfnSource: 'probe' | 'sysfs' | null;
}

export function sysfsHostReport(root = '/'): SysfsHostReport {
  const facts = readKvmModuleFacts(root);
  return {
    ...facts,
    hidden: [...hiddenCapabilities()],
    capabilities: {},
    vmTypes: [],
    guestMemfd: false,
    guestMemfdFlags: 0,
    maxGfnSource: facts.maxGfn === null ? null : 'sysfs',
  };
}
