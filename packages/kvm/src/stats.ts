/**
 * KVM's binary statistics (KVM_GET_STATS_FD on a VM or vCPU fd; Documentation/virt/kvm/api.rst
 * "KVM_GET_STATS_FD", virt/kvm/binary_stats.c kvm_stats_read()). The file is
 *
 *   struct kvm_stats_header { u32 flags, name_size, num_desc, id_offset, desc_offset, data_offset; }
 *   char id[name_size]
 *   struct kvm_stats_desc { u32 flags; s16 exponent; u16 size; u32 offset; u32 bucket_size; char name[name_size]; } x num_desc
 *   u64 data[]   (each descriptor's values at data_offset + desc.offset, `size` of them)
 *
 * The header, id and descriptors never change for the life of the fd; the data block is read
 * again for every snapshot.
 */
import { readSync } from 'node:fs';

/** KVM_STATS_TYPE_* (flags bits 0-3) */
export const KVM_STATS_TYPES = ['cumulative', 'instant', 'peak', 'linear_hist', 'log_hist'] as const;
export type KvmStatType = (typeof KVM_STATS_TYPES)[number];
/** KVM_STATS_UNIT_* (flags bits 4-7) */
export const KVM_STATS_UNITS = ['none', 'bytes', 'seconds', 'cycles', 'boolean'] as const;
export type KvmStatUnit = (typeof KVM_STATS_UNITS)[number];

export interface KvmStatDesc {
  name: string;
  type: KvmStatType;
  unit: KvmStatUnit;
  /** KVM_STATS_BASE_POW2 (else POW10) */
  base2: boolean;
  exponent: number;
  /** number of u64 values */
  size: number;
  /** byte offset of the values inside the data block */
  offset: number;
  bucketSize: number;
}

export interface KvmStatsLayout {
  id: string;
  descs: KvmStatDesc[];
  dataOffset: number;
  /** bytes of the data block: the end of the furthest descriptor's values */
  dataSize: number;
}

const HEADER_SIZE = 24;
const DESC_FIXED = 16;

function cString(bytes: Uint8Array): string {
  const nul = bytes.indexOf(0);
  return new TextDecoder().decode(nul < 0 ? bytes : bytes.subarray(0, nul));
}

/**
 * Parse the header, id and descriptors of a stats file. `bytes` holds the file from offset 0
 * up to at least the end of the descriptors. Throws on a malformed layout rather than reading
 * outside the buffer.
 */
export function parseKvmStatsLayout(bytes: Uint8Array): KvmStatsLayout {
  if (bytes.length < HEADER_SIZE) throw new Error(`stats file: ${bytes.length} bytes, shorter than its header`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const nameSize = dv.getUint32(4, true);
  const numDesc = dv.getUint32(8, true);
  const idOffset = dv.getUint32(12, true);
  const descOffset = dv.getUint32(16, true);
  const dataOffset = dv.getUint32(20, true);
  const descSize = DESC_FIXED + nameSize;
  if (nameSize === 0 || idOffset + nameSize > bytes.length || descOffset + numDesc * descSize > bytes.length) {
    throw new Error('stats file: header points outside the bytes read');
  }
  const id = cString(bytes.subarray(idOffset, idOffset + nameSize));
  const descs: KvmStatDesc[] = [];
  let dataSize = 0;
  for (let i = 0; i < numDesc; i++) {
    const at = descOffset + i * descSize;
    const flags = dv.getUint32(at, true);
    const size = dv.getUint16(at + 6, true);
    const offset = dv.getUint32(at + 8, true);
    const type = KVM_STATS_TYPES[flags & 0xf];
    const unit = KVM_STATS_UNITS[(flags >> 4) & 0xf];
    dataSize = Math.max(dataSize, offset + size * 8);
    descs.push({
      name: cString(bytes.subarray(at + DESC_FIXED, at + descSize)),
      // a type or unit newer than this table is kept readable under its neighbours' names
      type: type ?? 'cumulative',
      unit: unit ?? 'none',
      base2: ((flags >> 8) & 0xf) === 1,
      exponent: dv.getInt16(at + 4, true),
      size,
      offset,
      bucketSize: dv.getUint32(at + 12, true),
    });
  }
  return { id, descs, dataOffset, dataSize };
}

/** The scalar stats (size 1) of a data block, by name; histograms are left out. */
export function statsValues(layout: KvmStatsLayout, data: Uint8Array): Record<string, number> {
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const out: Record<string, number> = {};
  for (const d of layout.descs) {
    if (d.size !== 1 || d.offset + 8 > data.length) continue;
    out[d.name] = Number(dv.getBigUint64(d.offset, true));
  }
  return out;
}

function readAt(fd: number, length: number, position: number): Uint8Array {
  const buf = new Uint8Array(length);
  let done = 0;
  while (done < length) {
    const n = readSync(fd, buf, done, length - done, position + done);
    if (n === 0) break;
    done += n;
  }
  return buf.subarray(0, done);
}

/** A stats fd of a VM or vCPU: the layout is read once, values on every `read()`. */
export class KvmStatsFile {
  readonly layout: KvmStatsLayout;

  constructor(readonly fd: number) {
    const header = readAt(fd, HEADER_SIZE, 0);
    const dv = new DataView(header.buffer, header.byteOffset, header.byteLength);
    if (header.length < HEADER_SIZE) throw new Error('KVM_GET_STATS_FD: short header');
    const nameSize = dv.getUint32(4, true);
    const numDesc = dv.getUint32(8, true);
    const end = Math.max(dv.getUint32(12, true) + nameSize, dv.getUint32(16, true) + numDesc * (DESC_FIXED + nameSize));
    this.layout = parseKvmStatsLayout(readAt(fd, end, 0));
  }

  /** the scalar stats now */
  read(): Record<string, number> {
    return statsValues(this.layout, readAt(this.fd, this.layout.dataSize, this.layout.dataOffset));
  }
}
