/**
 * `filemap_invalidate_lock(inode->i_mapping)`. guest_memfd takes it exclusively around a
 * hole punch and on close, shared for allocation and memory failure. A resumable punch
 * (GuestMemfd.beginPunchHole) holds it between its phases; in a single-threaded model any
 * other taker would sleep forever, so it gets this error instead.
 */
export class InvalidateLockBusyError extends Error {
  constructor(what: string) {
    super(`${what}: would sleep on filemap_invalidate_lock, held by a hole punch in progress`);
    this.name = 'InvalidateLockBusyError';
  }
}
