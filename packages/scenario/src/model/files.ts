/**
 * Model handlers: any fd as a file, the memfd and /dev/kvm files, madvise / mprotect, more
 * VMs in one scenario, KVM_SET_NR_MMU_PAGES, KVM_RUN from the reset state and guest
 * exceptions delivered through the IDT.
 */
import { DevKvmFile, fail, MemfdFile, type FileIo, type FileStat, type KvmFile } from '@ccmem/core';
import { PROT_READ, PROT_WRITE } from '../numbers.js';
import { VM_TYPE_NAMES } from '../schema.js';
import { VM_TYPE_NUMBERS } from '../ops/needs.js';
import { backendOptions } from '../model-target.js';
import { accessOutcome, type ModelHandlers, type ModelRun } from './run.js';

/** KVM_MIN_ALLOC_MMU_PAGES (arch/x86/include/asm/kvm_host.h) */
const KVM_MIN_ALLOC_MMU_PAGES = 64;
/** reset state: CS.base 0xffff0000 + RIP 0xfff0 (kvm_vcpu_reset()) */
/** where a vCPU in its reset state fetches first (CS.base 0xffff0000 + RIP 0xfff0) */
export const RESET_FETCH_GPA = 0xfffffff0;

function fileIo(f: KvmFile): FileIo | null {
  const io = f as KvmFile & Partial<FileIo>;
  return typeof io.fileRead === 'function' && typeof io.fileWrite === 'function' && typeof io.fstat === 'function' ? (io as FileIo) : null;
}

/** KVM's own anon-inode files (a VM, a vCPU) and other pseudo files: no read, no FMODE_PREAD */
function pseudoIo(f: KvmFile, write: boolean, offset?: number): never {
  if (offset !== undefined) {
    if (offset < 0) fail('EINVAL', `ksys_p${write ? 'write' : 'read'}64: pos < 0`);
    fail('ESPIPE', `ksys_p${write ? 'write' : 'read'}64: a ${f.kind} fd has no FMODE_P${write ? 'WRITE' : 'READ'}`);
  }
  fail('EINVAL', `vfs_${write ? 'write' : 'read'}: a ${f.kind} fd has no ->${write ? 'write' : 'read'}_iter`);
}

function statOf(f: KvmFile): FileStat {
  const io = fileIo(f);
  if (io) return io.fstat();
  // anon_inode_getfd(): every KVM anon file shares the one anon inode
  return { st_size: 0, st_blksize: 4096, st_ino: 1 };
}

export const FILE_HANDLERS = {
  fd_read(a, m) {
    const f = m.file(a.fd);
    const io = fileIo(f);
    return { value: io ? io.fileRead(a.size, a.offset) : pseudoIo(f, false, a.offset) };
  },
  fd_write(a, m) {
    const f = m.file(a.fd);
    const io = fileIo(f);
    return { value: io ? io.fileWrite(a.size, a.offset) : pseudoIo(f, true, a.offset) };
  },
  fstat(a, m) {
    const st = statOf(m.file(a.fd));
    const stat: NonNullable<ReturnType<typeof toStat>> = toStat(st);
    if (a.distinct_from) stat.distinct_inode = a.distinct_from.every((fd) => statOf(m.file(fd)).st_ino !== st.st_ino);
    return { stat, detail: { st_ino: st.st_ino } };
  },
  memfd_create: (a, m) => ({ result: m.kvm.process.installFd(new MemfdFile(m.kvm.process.phys, a.size)) }),
  open_dev_kvm: (_a, m) => ({ result: m.kvm.process.installFd(new DevKvmFile()) }),
  madvise(a, m) {
    m.kvm.process.mm.madvise(a.addr, a.size, a.advice);
    return {};
  },
  mprotect(a, m) {
    m.kvm.process.mm.mprotect(a.addr, a.size, { read: (a.prot & PROT_READ) !== 0, write: (a.prot & PROT_WRITE) !== 0 });
    return {};
  },
  mbind(a, m) {
    const nodes = (a.nodes ?? []).reduce((mask, n) => (n >= 0 && n < 31 ? mask | (1 << n) : fail('EINVAL', `get_nodes: node ${n} beyond maxnode`)), 0);
    m.kvm.process.mm.mbind(a.addr, a.size, a.mode, nodes, a.flags ?? 0);
    return {};
  },
  get_mempolicy(a, m) {
    const pol = m.kvm.process.mm.getMempolicy(a.addr);
    return { value: a.field === 'nodemask' ? pol.nodes : pol.mode, detail: { mode: pol.mode, nodemask: pol.nodes } };
  },
  move_pages: (a, m) => ({ status: a.pages.map((p) => m.kvm.process.mm.pageNode(p)) }),
  create_vm(a, m) {
    const type = VM_TYPE_NUMBERS[VM_TYPE_NAMES[a.type ?? m.config.type]];
    const vm = m.kvm.createVm({ type, options: backendOptions({ ...m.config, type: a.type ?? m.config.type }) });
    m.otherVms.set(vm.fd, vm);
    return { result: vm.fd };
  },
  vm_fd: (_a, m) => ({ result: m.vm.fd }),
  vcpu_fd: (a, m) => ({ result: m.vcpu(a.vcpu).fd }),
  set_nr_mmu_pages(a, m) {
    // kvm_vm_ioctl_set_nr_mmu_pages(): the floor, then the budget (the model's shadow MMU keeps
    // no page budget: the value is recorded)
    if (a.pages < KVM_MIN_ALLOC_MMU_PAGES) fail('EINVAL', `kvm_vm_ioctl_set_nr_mmu_pages: below KVM_MIN_ALLOC_MMU_PAGES (${KVM_MIN_ALLOC_MMU_PAGES})`);
    m.vmOf(a.vm);
    m.nrMmuPages.set(a.vm ?? m.vm.fd, a.pages);
    return {};
  },
  set_idt(a, m) {
    m.vcpu(a.vcpu).idt = { base: a.base, limit: a.limit };
    return {};
  },
  guest_exception: (a, m) => accessOutcome(m.guestVcpu(a.vcpu).raiseException(a.vector)),
} satisfies ModelHandlers;

function toStat(st: FileStat): { st_size: number; st_blksize: number; distinct_inode?: boolean } {
  return { st_size: st.st_size, st_blksize: st.st_blksize };
}

/** the VM a VM op names with `vm:` (a create_vm fd), or the scenario's */
export type { ModelRun };
