/** Test support (not published): a memslot call that must fail and change nothing. */
import { expect } from 'vitest';
import { KvmError } from '../errno.js';
import { memslotsSnapshot, type KvmVmMemslots } from '../memslot/memslots.js';

/**
 * The KvmError `fn` throws, after checking that it threw one, left every piece of memslot state
 * as it was and released slots_lock.
 */
export function memslotFailure(slots: KvmVmMemslots, fn: () => unknown): KvmError {
  const before = memslotsSnapshot(slots);
  let err: unknown = null;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(KvmError);
  expect(memslotsSnapshot(slots)).toEqual(before);
  expect(slots.slotsLockHeld).toBe(false);
  return err as KvmError;
}
