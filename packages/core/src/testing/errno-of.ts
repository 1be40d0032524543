import { KvmError } from '../errno.js';

/** Run a uAPI call; the KvmError it failed with, or undefined when it succeeded (any other error is rethrown). */
export function kvmErrorOf(fn: () => unknown): KvmError | undefined {
  try {
    fn();
  } catch (e) {
    if (e instanceof KvmError) return e;
    throw e;
  }
  return undefined;
}

/** Run a uAPI call; the errno name it failed with, or undefined when it succeeded. */
export function errnoOf(fn: () => unknown): string | undefined {
  return kvmErrorOf(fn)?.code;
}

/** Run a uAPI call; the errno name and the failing check (KvmError.check), or undefined when it succeeded. */
export function failureOf(fn: () => unknown): { code: string; check: string } | undefined {
  const e = kvmErrorOf(fn);
  return e && { code: e.code, check: e.check };
}
