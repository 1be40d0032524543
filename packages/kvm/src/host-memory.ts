/**
 * The VMM process's own memory, for real: anonymous mmap, memfd, fallocate, loads and stores
 * through host virtual addresses, and host touches that may die of SIGBUS (done in a child
 * process so the caller survives, e.g. touching a private guest_memfd page through its mmap).
 */
import { spawnSync } from 'node:child_process';
import { KvmError, errnoName } from '@ccmem/core';
import {
  MAP_ANONYMOUS,
  MAP_NORESERVE,
  MAP_PRIVATE,
  MAP_SHARED,
  PROT_READ,
  PROT_WRITE,
  SyscallError,
  koffiModulePath,
  memoryView,
  sysClose,
  sysFallocate,
  sysFtruncate,
  sysMadvise,
  sysMemfdCreate,
  sysMmap,
  sysMunmap,
  sysFstat,
  sysMprotect,
  sysRead,
  sysWrite,
  ArgBuffer,
  STAT,
} from './libc.js';

/** Throw the kernel's errno as a KvmError (`check` names the call), or SyscallError if unnamed. */
export function raiseErrno(check: string, err: number): never {
  const name = errnoName(err);
  if (name) throw new KvmError(name, check);
  throw new SyscallError(check, err);
}

export interface MmapArgs {
  length: number;
  /** PROT_* bits; default PROT_READ | PROT_WRITE */
  prot?: number;
  /** MAP_SHARED (true) or MAP_PRIVATE (false, default) */
  shared?: boolean;
  /** file to map; anonymous memory when absent */
  fd?: number;
  offset?: number;
  /** MAP_NORESERVE: large sparse mappings cost nothing until touched (default true) */
  noreserve?: boolean;
}

/** mmap(2): returns the host virtual address. Throws KvmError('ENODEV' | 'EINVAL' | ..., 'mmap'). */
export function mmap(args: MmapArgs): number {
  const prot = args.prot ?? PROT_READ | PROT_WRITE;
  let flags = args.shared ? MAP_SHARED : MAP_PRIVATE;
  if (args.fd === undefined) flags |= MAP_ANONYMOUS;
  if (args.noreserve ?? true) flags |= MAP_NORESERVE;
  const r = sysMmap(0, args.length, prot, flags, args.fd ?? -1, args.offset ?? 0);
  if (r.ret === -1) raiseErrno('mmap', r.errno);
  return r.ret;
}

export function munmap(hva: number, length: number): void {
  const r = sysMunmap(hva, length);
  if (r.ret === -1) raiseErrno('munmap', r.errno);
}

export function madvise(hva: number, length: number, advice: number): void {
  const r = sysMadvise(hva, length, advice);
  if (r.ret === -1) raiseErrno('madvise', r.errno);
}

/** memfd_create(2) + ftruncate to `size`: a shareable anonymous file. */
export function memfdCreate(name: string, size: number): number {
  const r = sysMemfdCreate(name, 1 /* MFD_CLOEXEC */);
  if (r.ret === -1) raiseErrno('memfd_create', r.errno);
  const t = sysFtruncate(r.ret, size);
  if (t.ret === -1) {
    sysClose(r.ret);
    raiseErrno('ftruncate', t.errno);
  }
  return r.ret;
}

/** fallocate(2); on a guest_memfd this runs kvm_gmem_fallocate() (PUNCH_HOLE, allocate). */
export function fallocate(fd: number, mode: number, offset: number, len: number): void {
  const r = sysFallocate(fd, mode, offset, len);
  if (r.ret === -1) raiseErrno('fallocate', r.errno);
}

/** mprotect(2) */
export function mprotect(hva: number, length: number, prot: number): void {
  const r = sysMprotect(hva, length, prot);
  if (r.ret === -1) raiseErrno('mprotect', r.errno);
}

/** a scratch buffer for read(2) / write(2) / fstat(2) (grown on demand) */
let ioBuf: ArgBuffer | null = null;

/** read(2), or pread(2) with `offset`, of `count` bytes (into a scratch buffer): the bytes read */
export function fileRead(fd: number, count: number, offset?: number): number {
  ioBuf ??= new ArgBuffer(4096);
  ioBuf.ensure(Math.max(count, 1));
  const r = sysRead(fd, ioBuf.addr, count, offset);
  if (r.ret === -1) raiseErrno(offset === undefined ? 'read' : 'pread', r.errno);
  return r.ret;
}

/** write(2), or pwrite(2) with `offset`, of `count` zero bytes: the bytes written */
export function fileWrite(fd: number, count: number, offset?: number): number {
  ioBuf ??= new ArgBuffer(4096);
  ioBuf.ensure(Math.max(count, 1));
  const r = sysWrite(fd, ioBuf.addr, count, offset);
  if (r.ret === -1) raiseErrno(offset === undefined ? 'write' : 'pwrite', r.errno);
  return r.ret;
}

/** fstat(2): size, block size and inode number */
export function fstat(fd: number): { st_size: number; st_blksize: number; st_ino: number } {
  ioBuf ??= new ArgBuffer(4096);
  ioBuf.ensure(STAT.SIZE);
  const r = sysFstat(fd, ioBuf.addr);
  if (r.ret === -1) raiseErrno('fstat', r.errno);
  const v = ioBuf.view;
  return { st_size: Number(v.getBigInt64(STAT.st_size, true)), st_blksize: Number(v.getBigInt64(STAT.st_blksize, true)), st_ino: Number(v.getBigUint64(STAT.st_ino, true)) };
}

export function close(fd: number): void {
  const r = sysClose(fd);
  if (r.ret === -1) raiseErrno('close', r.errno);
}

const SIZES = new Set([1, 2, 4, 8]);

/** Little-endian load of 1, 2, 4 or 8 bytes at `hva`, in this process (a fault here is fatal). */
export function read(hva: number, size: number): bigint {
  if (!SIZES.has(size)) throw new RangeError(`read: size must be 1, 2, 4 or 8, not ${size}`);
  const v = new DataView(memoryView(hva, size));
  switch (size) {
    case 1:
      return BigInt(v.getUint8(0));
    case 2:
      return BigInt(v.getUint16(0, true));
    case 4:
      return BigInt(v.getUint32(0, true));
    default:
      return v.getBigUint64(0, true);
  }
}

/** Little-endian store of 1, 2, 4 or 8 bytes at `hva` (the value is truncated to `size`). */
export function write(hva: number, size: number, value: bigint | number): void {
  if (!SIZES.has(size)) throw new RangeError(`write: size must be 1, 2, 4 or 8, not ${size}`);
  const v = new DataView(memoryView(hva, size));
  const big = BigInt.asUintN(64, BigInt(value));
  switch (size) {
    case 1:
      v.setUint8(0, Number(big & 0xffn));
      break;
    case 2:
      v.setUint16(0, Number(big & 0xffffn), true);
      break;
    case 4:
      v.setUint32(0, Number(big & 0xffffffffn), true);
      break;
    default:
      v.setBigUint64(0, big, true);
  }
}

/** Copy `length` bytes out of this process's memory at `hva`. */
export function readBytes(hva: number, length: number): Uint8Array {
  return new Uint8Array(memoryView(hva, length).slice(0));
}

/** Copy `data` into this process's memory at `hva`. */
export function writeBytes(hva: number, data: Uint8Array): void {
  new Uint8Array(memoryView(hva, data.length)).set(data);
}

export interface FileTouchArgs {
  /** the file to map (guest_memfd, memfd); it is handed to the child as its fd 3 */
  fd: number;
  /** byte offset in the file of the access */
  offset: number;
  size: 1 | 2 | 4 | 8;
  write?: boolean;
  value?: bigint;
  /** MAP_SHARED (default true; guest_memfd refuses MAP_PRIVATE with EINVAL) */
  shared?: boolean;
}

/** What a host touch of a file mapping did: a value, a failed mmap, or a fatal signal. */
export interface FileTouchResult {
  value?: bigint;
  /** mmap(2) failed with this errno (ENODEV: guest_memfd without GUEST_MEMFD_FLAG_MMAP) */
  errno?: string;
  /** the touch killed the process (SIGBUS: a private or out-of-range guest_memfd page) */
  signal?: string;
}

const CHILD_SCRIPT = `
const k = require(process.argv[1]);
const a = JSON.parse(process.argv[2]);
const libc = k.load('libc.so.6');
const mmap = libc.func('mmap', 'uintptr_t', ['uintptr_t', 'size_t', 'int', 'int', 'int', 'int64_t']);
const pageOff = a.offset - (a.offset % 4096);
const len = Math.ceil((a.offset - pageOff + a.size) / 4096) * 4096;
const addr = Number(mmap(0, len, 3, a.shared ? 1 : 2, 3, pageOff));
if (addr === 2 ** 64 - 1) { process.stdout.write(JSON.stringify({ errno: k.errno() })); process.exit(0); }
const v = new DataView(k.view(addr + (a.offset - pageOff), a.size));
if (a.write) {
  const x = BigInt.asUintN(64, BigInt(a.value));
  if (a.size === 1) v.setUint8(0, Number(x & 0xffn));
  else if (a.size === 2) v.setUint16(0, Number(x & 0xffffn), true);
  else if (a.size === 4) v.setUint32(0, Number(x & 0xffffffffn), true);
  else v.setBigUint64(0, x, true);
}
let r;
if (a.size === 1) r = BigInt(v.getUint8(0));
else if (a.size === 2) r = BigInt(v.getUint16(0, true));
else if (a.size === 4) r = BigInt(v.getUint32(0, true));
else r = v.getBigUint64(0, true);
process.stdout.write(JSON.stringify({ value: r.toString() }));
`;

/**
 * Touch a file mapping from a child process: mmap `fd` there, load (or store then load)
 * `size` bytes at `offset`. A SIGBUS kills only the child and is reported as
 * `{ signal: 'SIGBUS' }`; a refused mmap is reported as `{ errno }`.
 */
export function touchFileInChild(args: FileTouchArgs): FileTouchResult {
  const payload = JSON.stringify({
    offset: args.offset,
    size: args.size,
    write: args.write ?? false,
    value: (args.value ?? 0n).toString(),
    shared: args.shared ?? true,
  });
  const r = spawnSync(process.execPath, ['-e', CHILD_SCRIPT, koffiModulePath(), payload], {
    stdio: ['ignore', 'pipe', 'pipe', args.fd],
    encoding: 'utf8',
    timeout: 30_000,
  });
  if (r.error) throw new Error(`host touch child did not finish: ${r.error.message}`); // e.g. ETIMEDOUT
  if (r.signal) return { signal: r.signal };
  if (r.status !== 0) throw new Error(`host touch child failed (status ${r.status}): ${r.stderr}`);
  const out = JSON.parse(r.stdout) as { value?: string; errno?: number };
  if (out.errno !== undefined) return { errno: errnoName(out.errno) ?? String(out.errno) };
  return { value: BigInt(out.value ?? '0') };
}

