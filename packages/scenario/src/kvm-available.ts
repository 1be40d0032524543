/**
 * Whether this machine has KVM at all, asked without @ccmem/kvm (node:fs only): the CLI and the
 * matrix decide on a real-KVM column without loading libc through koffi.
 */
import { existsSync } from 'node:fs';

/** why the kvm target cannot run at all on this machine, or null when /dev/kvm is there */
export function kvmUnavailableReason(): string | null {
  return existsSync('/dev/kvm') ? null : '/dev/kvm is missing: this host has no KVM';
}
