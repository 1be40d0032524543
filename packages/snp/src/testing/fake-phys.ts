/** A small HostPhysMem for tests: sequential frames, contents in a Map. */
import type { HostPhysMem } from '@ccmem/core';

export class FakePhys implements HostPhysMem {
  private next: number;
  private readonly allocated = new Set<number>();
  readonly leaked = new Set<number>();
  private readonly free: number[] = [];
  private readonly data = new Map<number, Uint8Array>();

  constructor(firstPfn = 0x100000) {
    this.next = firstPfn;
  }
  allocPage(): number {
    const pfn = this.free.pop() ?? this.next++;
    this.allocated.add(pfn);
    return pfn;
  }
  freePage(pfn: number): void {
    if (this.leaked.has(pfn)) throw new Error(`freePage of leaked pfn ${pfn}`);
    this.allocated.delete(pfn);
    this.data.delete(pfn);
    this.free.push(pfn);
  }
  leakPage(pfn: number): void {
    if (!this.allocated.has(pfn)) throw new Error(`leakPage of unallocated pfn ${pfn}`);
    this.allocated.delete(pfn);
    this.leaked.add(pfn);
  }
  isAllocated(pfn: number): boolean {
    return this.allocated.has(pfn);
  }
  zeroPage(pfn: number): void {
    this.data.delete(pfn);
  }
  private page(pfn: number): Uint8Array {
    let p = this.data.get(pfn);
    if (!p) {
      p = new Uint8Array(4096);
      this.data.set(pfn, p);
    }
    return p;
  }
  readValue(pfn: number, offset: number, size: number): bigint {
    let v = 0n;
    const b = this.readBytes(pfn, offset, size);
    for (let i = size - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]!);
    return v;
  }
  writeValue(pfn: number, offset: number, size: number, value: bigint): void {
    const b = new Uint8Array(size);
    for (let i = 0; i < size; i++) b[i] = Number((value >> BigInt(8 * i)) & 0xffn);
    this.writeBytes(pfn, offset, b);
  }
  readBytes(pfn: number, offset: number, length: number): Uint8Array {
    const p = this.data.get(pfn);
    return p ? p.slice(offset, offset + length) : new Uint8Array(length);
  }
  writeBytes(pfn: number, offset: number, data: Uint8Array): void {
    this.page(pfn).set(data, offset);
  }
  get allocatedPages(): number {
    return this.allocated.size;
  }
  get storedPages(): number {
    return this.data.size;
  }
}
