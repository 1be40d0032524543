import { describe, expect, it, vi } from 'vitest';
import { KvmError, fail, isKvmError } from './errno.js';
import { SlotsLockBusyError } from './memslot/memslots.js';

/** A second, separately evaluated copy of this module, as a second @ccmem/core in node_modules would be. */
async function secondCopy(): Promise<typeof import('./errno.js')> {
  vi.resetModules();
  return import('./errno.js');
}

describe('KvmError across copies of @ccmem/core', () => {
  it('a second copy is a different class', async () => {
    const other = await secondCopy();
    expect(other.KvmError).not.toBe(KvmError);
    // the ordinary prototype check alone would fail across copies
    expect(Object.getPrototypeOf(new other.KvmError('EINVAL', 'x'))).not.toBe(KvmError.prototype);
  });

  it('isKvmError and instanceof recognise an error thrown by the other copy, both ways', async () => {
    const other = await secondCopy();
    let thrown: unknown;
    try {
      other.fail('EEXIST', 'kvm_set_memory_region: overlap');
    } catch (e) {
      thrown = e;
    }
    expect(isKvmError(thrown)).toBe(true);
    expect(thrown instanceof KvmError).toBe(true);
    expect(thrown).toBeInstanceOf(KvmError);
    if (!isKvmError(thrown)) throw new Error('unreachable');
    expect(thrown.code).toBe('EEXIST');
    expect(thrown.errno).toBe(17);

    const mine = new KvmError('EINVAL', 'check');
    expect(other.isKvmError(mine)).toBe(true);
    expect(mine instanceof other.KvmError).toBe(true);
  });

  it('other errors and look-alikes are not KvmErrors', () => {
    expect(isKvmError(new Error('EINVAL'))).toBe(false);
    expect(isKvmError({ code: 'EINVAL', errno: 22, check: 'x' })).toBe(false);
    expect(isKvmError(null)).toBe(false);
    expect(isKvmError('EINVAL')).toBe(false);
    expect(new Error('x') instanceof KvmError).toBe(false);
    expect(new SlotsLockBusyError() instanceof KvmError).toBe(false);
  });

  it('the brand is not an own, enumerable property (errors log and serialise as before)', () => {
    const e = new KvmError('EFAULT', 'copy_from_user');
    expect(Object.getOwnPropertySymbols(e)).toEqual([]);
    expect(Object.keys(e).sort()).toEqual(['check', 'code', 'errno', 'name'].sort());
    expect(() => fail('EFAULT', 'x')).toThrow(KvmError);
  });

  it('a subclass keeps the ordinary instanceof', () => {
    class SubError extends KvmError {}
    expect(new SubError('EINVAL', 'x') instanceof SubError).toBe(true);
    expect(new SubError('EINVAL', 'x') instanceof KvmError).toBe(true);
    expect(new KvmError('EINVAL', 'x') instanceof SubError).toBe(false);
  });
});
