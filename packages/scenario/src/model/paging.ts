/** Model handlers: guest paging (control registers, guest page tables, accesses by gva, L2). */
import { fail, GuestPageTableBuilder, PAGE_SIZE } from '@ccmem/core';
import { accessOutcome, type ModelHandlers } from './run.js';

export const PAGING_HANDLERS = {
  set_sregs(a, m) {
    const v = m.vcpu(a.vcpu);
    v.paging.setRegs({
      ...(a.cr0 !== undefined && { cr0: a.cr0 }),
      ...(a.cr3 !== undefined && { cr3: a.cr3 }),
      ...(a.cr4 !== undefined && { cr4: a.cr4 }),
      ...(a.efer !== undefined && { efer: a.efer }),
    });
    return {};
  },
  guest_page_table(a, m) {
    if (a.tables_at % PAGE_SIZE !== 0) fail('EINVAL', 'guest_page_table: tables_at must be page aligned');
    let next = a.tables_at;
    const mem = m.vm.guestMemory;
    const b = new GuestPageTableBuilder(
      mem,
      () => {
        const gpa = next;
        next += PAGE_SIZE;
        // a fresh table page is all zeroes (not present)
        for (let off = 0; off < PAGE_SIZE; off += 8) mem.write64(gpa + off, 0, 0);
        return gpa;
      },
      a.levels ?? 4,
      a.ept ?? false,
    );
    const entries = a.map.map((e) => b.map(e.va, e.pa, e));
    return { result: b.root, detail: { root: b.root, entries, tables_end: next } };
  },
  guest_load_cr3(a, m) {
    m.guestVcpu(a.vcpu).paging.setCr3(a.cr3);
    return {};
  },
  guest_invlpg(a, m) {
    m.guestVcpu(a.vcpu).paging.invlpg(a.gva);
    return {};
  },
  guest_read_gva: (a, m) => accessOutcome(m.guestVcpu(a.vcpu).paging.access({ gva: a.gva, size: a.size, kind: 'read', ...(a.user !== undefined && { user: a.user }) })),
  guest_write_gva: (a, m) =>
    accessOutcome(m.guestVcpu(a.vcpu).paging.access({ gva: a.gva, size: a.size, kind: 'write', value: a.value, ...(a.user !== undefined && { user: a.user }) })),
  enter_guest_mode(a, m) {
    m.vcpu(a.vcpu).paging.enterGuestMode(a.eptp);
    return {};
  },
  leave_guest_mode(a, m) {
    m.vcpu(a.vcpu).paging.leaveGuestMode();
    return {};
  },
  l2_read: (a, m) => accessOutcome(m.guestVcpu(a.vcpu).paging.l2Access({ gva: a.ngpa, size: a.size, kind: 'read' })),
  l2_write: (a, m) => accessOutcome(m.guestVcpu(a.vcpu).paging.l2Access({ gva: a.ngpa, size: a.size, kind: 'write', value: a.value })),
} satisfies ModelHandlers;
