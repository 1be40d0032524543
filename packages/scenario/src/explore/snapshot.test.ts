import { describe, expect, it } from 'vitest';
import { GraphSnapshot } from './snapshot.js';

class Node {
  value = 1;
  next: Node | null = null;
  readonly list: number[] = [1, 2];
  readonly words = new Uint32Array(4);
  disposed = false;
}

describe('GraphSnapshot', () => {
  it('puts properties, elements, Map and Set entries and buffer bytes back, keeping identities', () => {
    const a = new Node();
    const b = new Node();
    a.next = b;
    const shared = new ArrayBuffer(16);
    const root = { a, map: new Map<number, Node>([[1, a]]), set: new Set([b]), lo: new Uint8Array(shared, 0, 8), hi: new Uint8Array(shared, 8, 8), items: [a, b] };
    root.lo[0] = 7;
    root.hi[0] = 9;
    const snap = new GraphSnapshot(root);
    expect(snap.objects).toBe(8); // root, a, b, a.list, b.list, map, set, items (a.next is b)
    a.value = 5;
    a.next = new Node();
    a.list.push(3);
    a.words[2] = 42;
    root.map.set(2, b).delete(1);
    root.set.add(a);
    root.lo[0] = 0;
    root.hi.fill(1);
    root.items.reverse();
    const lo = root.lo;
    root.lo = new Uint8Array(8);
    snap.restore();
    expect(a.value).toBe(1);
    expect(a.next).toBe(b);
    expect(a.list).toEqual([1, 2]);
    expect([...a.words]).toEqual([0, 0, 0, 0]);
    expect([...root.map]).toEqual([[1, a]]);
    expect([...root.set]).toEqual([b]);
    expect(root.lo).toBe(lo);
    expect([...root.lo]).toEqual([7, 0, 0, 0, 0, 0, 0, 0]);
    expect([...root.hi]).toEqual([9, 0, 0, 0, 0, 0, 0, 0]);
    expect(root.items).toEqual([a, b]);
    // twice: the recorded state itself is not changed by a restore
    a.value = 6;
    snap.restore();
    expect(a.value).toBe(1);
  });

  it('seals the recorded objects: a property added or deleted later throws instead of surviving a restore', () => {
    const o: { x: number; y?: number } = { x: 1 };
    new GraphSnapshot({ o });
    expect(() => {
      o.y = 2;
    }).toThrow(TypeError);
    expect(() => {
      delete (o as { x?: number }).x;
    }).toThrow(TypeError);
    o.x = 3; // existing properties stay writable
    expect(o.x).toBe(3);
  });

  it('leaves out skipped objects and what only they reach', () => {
    const input = { n: 1, inner: { m: 2 } };
    const root = { input, own: { k: 3 } };
    const snap = new GraphSnapshot(root, new Set([input]));
    input.n = 10;
    input.inner.m = 20;
    root.own.k = 30;
    snap.restore();
    expect(input).toEqual({ n: 10, inner: { m: 20 } });
    expect(root.own.k).toBe(3);
    expect(Object.isSealed(input)).toBe(false);
  });

  it('is not restorable once a recorded object was disposed', () => {
    const n = new Node();
    const snap = new GraphSnapshot({ n });
    expect(snap.restorable).toBe(true);
    n.disposed = true;
    expect(snap.restorable).toBe(false);
    expect(() => snap.restore()).toThrow(/disposed/);
  });

  it('refuses what it cannot restore', () => {
    expect(() => new GraphSnapshot({ w: new WeakMap() })).toThrow(/WeakMap/);
    expect(() => new GraphSnapshot({ p: Promise.resolve() })).toThrow(/Promise/);
    expect(() => new GraphSnapshot({ d: new Date(0) })).toThrow(/Date/);
    expect(() => new GraphSnapshot({ s: new Uint8Array(new SharedArrayBuffer(8)) })).toThrow(/SharedArrayBuffer/);
    // (ES2024 resizable buffers: not in this build's lib)
    const Resizable = ArrayBuffer as unknown as new (n: number, o: { maxByteLength: number }) => ArrayBuffer;
    expect(() => new GraphSnapshot({ r: new Resizable(8, { maxByteLength: 16 }) })).toThrow(/resizable/);
    expect(() =>
      new GraphSnapshot({
        get g() {
          return 1;
        },
      }),
    ).toThrow(/accessor/);
  });

  it('throws on a restore after a recorded buffer was detached', () => {
    const buf = new ArrayBuffer(8);
    const snap = new GraphSnapshot({ buf });
    structuredClone(buf, { transfer: [buf] });
    expect(() => snap.restore()).toThrow(/detached/);
  });
});
