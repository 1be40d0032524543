/**
 * Linux errno values as the KVM uAPI returns them (x86-64 numbering), and the error
 * every failed model call throws. A failed call never changes model state.
 */
export const ERRNO = {
  EPERM: 1,
  ENOENT: 2,
  EINTR: 4,
  EIO: 5,
  ENXIO: 6,
  E2BIG: 7,
  EBADF: 9,
  EAGAIN: 11,
  ENOMEM: 12,
  EACCES: 13,
  EFAULT: 14,
  EBUSY: 16,
  EEXIST: 17,
  ENODEV: 19,
  EINVAL: 22,
  EMFILE: 24,
  ENOTTY: 25,
  EFBIG: 27,
  ENOSPC: 28,
  ESPIPE: 29,
  ERANGE: 34,
  EOPNOTSUPP: 95,
  EHWPOISON: 133,
} as const;

export type ErrnoName = keyof typeof ERRNO;

const NAME_BY_NUMBER = new Map<number, ErrnoName>(
  (Object.entries(ERRNO) as [ErrnoName, number][]).map(([name, value]) => [value, name]),
);

export function errnoName(errno: number): ErrnoName | undefined {
  return NAME_BY_NUMBER.get(errno);
}

export function isErrnoName(name: string): name is ErrnoName {
  return Object.prototype.hasOwnProperty.call(ERRNO, name);
}

/**
 * The brand every `KvmError` carries. `Symbol.for` puts it in the global symbol registry,
 * so it is the same symbol in every copy of `@ccmem/core` loaded in a process (two
 * versions in node_modules, a bundled copy): an error thrown by one copy is recognised by
 * `isKvmError` and `instanceof KvmError` of another.
 */
const KVM_ERROR_BRAND = Symbol.for('@ccmem/core/KvmError');

/**
 * A uAPI call failed: `errno` is what the kernel would put in errno (the ioctl returned -1),
 * `check` names the kernel check that failed, e.g. "kvm_set_memory_region: overlap".
 */
export class KvmError extends Error {
  readonly errno: number;
  readonly code: ErrnoName;
  readonly check: string;

  constructor(code: ErrnoName, check: string) {
    super(`${code} (${ERRNO[code]}): ${check}`);
    this.name = 'KvmError';
    this.code = code;
    this.errno = ERRNO[code];
    this.check = check;
  }

  /**
   * `e instanceof KvmError` holds for a KvmError of any copy of `@ccmem/core` (by its brand);
   * a subclass keeps the ordinary prototype check.
   */
  static override [Symbol.hasInstance](value: unknown): boolean {
    if (this !== KvmError) return Function.prototype[Symbol.hasInstance].call(this, value);
    return isKvmError(value);
  }
}

// On the prototype (not enumerable), so it is inherited by every KvmError and stays out of logs.
Object.defineProperty(KvmError.prototype, KVM_ERROR_BRAND, { value: true });

/** Throw a KvmError; typed `never` so checks read as `if (bad) fail('EINVAL', '...')`. */
export function fail(code: ErrnoName, check: string): never {
  throw new KvmError(code, check);
}

/** Whether `e` is a KvmError, thrown by this or any other copy of `@ccmem/core`. */
export function isKvmError(e: unknown): e is KvmError {
  return typeof e === 'object' && e !== null && (e as Record<symbol, unknown>)[KVM_ERROR_BRAND] === true;
}
