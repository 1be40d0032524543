import { describe, expect, it } from 'vitest';
import { parseKvmStatsLayout, statsValues } from './stats.js';

/** a stats file laid out as virt/kvm/binary_stats.c writes it */
function statsFile(id: string, stats: { name: string; flags: number; size: number; values: bigint[] }[], nameSize = 48): Uint8Array {
  const descSize = 16 + nameSize;
  const idOffset = 24;
  const descOffset = idOffset + nameSize;
  const dataOffset = descOffset + stats.length * descSize;
  const dataSize = stats.reduce((n, s) => n + s.size * 8, 0);
  const bytes = new Uint8Array(dataOffset + dataSize);
  const dv = new DataView(bytes.buffer);
  dv.setUint32(4, nameSize, true);
  dv.setUint32(8, stats.length, true);
  dv.setUint32(12, idOffset, true);
  dv.setUint32(16, descOffset, true);
  dv.setUint32(20, dataOffset, true);
  bytes.set(new TextEncoder().encode(id), idOffset);
  let off = 0;
  stats.forEach((s, i) => {
    const at = descOffset + i * descSize;
    dv.setUint32(at, s.flags, true);
    dv.setInt16(at + 4, 0, true);
    dv.setUint16(at + 6, s.size, true);
    dv.setUint32(at + 8, off, true);
    bytes.set(new TextEncoder().encode(s.name), at + 16);
    s.values.forEach((v, j) => dv.setBigUint64(dataOffset + off + j * 8, v, true));
    off += s.size * 8;
  });
  return bytes;
}

describe('KVM binary stats', () => {
  it('parses the header, id and descriptors and reads scalar values by name', () => {
    const file = statsFile('kvm-1234', [
      { name: 'remote_tlb_flush', flags: 0, size: 1, values: [7n] },
      { name: 'pages_4k', flags: 1, size: 1, values: [512n] },
      { name: 'halt_poll_success_hist', flags: 4 | (2 << 4), size: 3, values: [1n, 2n, 3n] },
      { name: 'max_mmu_page_hash_collisions', flags: 2, size: 1, values: [3n] },
    ]);
    const layout = parseKvmStatsLayout(file);
    expect(layout.id).toBe('kvm-1234');
    expect(layout.descs.map((d) => [d.name, d.type, d.size])).toEqual([
      ['remote_tlb_flush', 'cumulative', 1],
      ['pages_4k', 'instant', 1],
      ['halt_poll_success_hist', 'log_hist', 3],
      ['max_mmu_page_hash_collisions', 'peak', 1],
    ]);
    expect(layout.descs[2]!.unit).toBe('seconds');
    expect(layout.dataSize).toBe(6 * 8);
    const values = statsValues(layout, file.subarray(layout.dataOffset));
    // histograms are not scalars
    expect(values).toEqual({ remote_tlb_flush: 7, pages_4k: 512, max_mmu_page_hash_collisions: 3 });
  });

  it('refuses a header that points outside the bytes', () => {
    const file = statsFile('kvm-1', [{ name: 'pages_4k', flags: 1, size: 1, values: [1n] }]);
    expect(() => parseKvmStatsLayout(file.subarray(0, 40))).toThrow(/outside/);
    expect(() => parseKvmStatsLayout(file.subarray(0, 10))).toThrow(/shorter than its header/);
  });
});
