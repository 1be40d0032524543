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
}

/** Throw a KvmError; typed `never` so checks read as `if (bad) fail('EINVAL', '...')`. */
export function fail(code: ErrnoName, check: string): never {
  throw new KvmError(code, check);
}

export function isKvmError(e: unknown): e is KvmError {
  return e instanceof KvmError;
}
