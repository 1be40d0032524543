/**
 * Whether this machine's KVM can be used at all, asked without @ccmem/kvm (node:fs only): the
 * CLI and the matrix decide on a real-KVM column, and `run --target kvm` / `diff` refuse to
 * start (exit 2), without loading libc through koffi.
 */
import { closeSync, constants, openSync, statSync } from 'node:fs';

/** the KVM device: `CCMEM_KVM_DEVICE` when set (as @ccmem/kvm's kvmDevicePath()), else /dev/kvm */
export function kvmDevice(env: NodeJS.ProcessEnv = process.env): string {
  return env.CCMEM_KVM_DEVICE || '/dev/kvm';
}

/**
 * Why the kvm target cannot run at all on this machine (the device is missing, is not a
 * character device, or cannot be opened read-write), or null when it can be opened.
 */
export function kvmUnavailableReason(env: NodeJS.ProcessEnv = process.env): string | null {
  const path = kvmDevice(env);
  let isChar: boolean;
  try {
    isChar = statSync(path).isCharacterDevice();
  } catch {
    return `${path} is missing: this host has no KVM`;
  }
  if (!isChar) return `${path} is not a character device: this host has no usable KVM`;
  try {
    closeSync(openSync(path, constants.O_RDWR));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? 'error';
    return `${path} cannot be opened read-write (${code}): this user cannot use KVM`;
  }
  return null;
}
