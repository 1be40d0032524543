/**
 * One small scenario the parser's and the CLI's tests share: a KVM_MEM_READONLY slot whose
 * reads come from its hva and whose guest write exits as MMIO, then an overlapping slot (EEXIST).
 * It is scenarios/guest-access/readonly-slot-write-mmio.yaml without its description and
 * applies_to, so its steps start at line 4.
 */
export const READONLY_SLOT_SCENARIO = `name: readonly slot write exits to userspace
vm: { type: default }
steps:
  - mmap: { size: 2MiB }
    as: ram
  - write: { addr: ram+0x10, size: 4, value: 0xcafef00d }
  - set_user_memory_region2: { slot: 0, flags: [KVM_MEM_READONLY], guest_phys_addr: 0x100000, memory_size: 2MiB, userspace_addr: ram }
  - create_vcpu: { id: 0 }
  - guest_read: { vcpu: 0, gpa: 0x100010, size: 4 }
    expect: { value: 0xcafef00d }
  - guest_write: { vcpu: 0, gpa: 0x100000, size: 4, value: 0xdeadbeef }
    expect: { exit: KVM_EXIT_MMIO, mmio: { phys_addr: 0x100000, len: 4, is_write: true, data: 0xdeadbeef } }
  - set_user_memory_region2: { slot: 1, guest_phys_addr: 0x100000, memory_size: 4KiB, userspace_addr: ram }
    expect: { errno: EEXIST }
`;
