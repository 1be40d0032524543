import { KvmError } from '../errno.js';

/** Run a uAPI call; the errno name it failed with, or undefined when it succeeded. */
export function errnoOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    if (e instanceof KvmError) return e.code;
    throw e;
  }
  return undefined;
}
