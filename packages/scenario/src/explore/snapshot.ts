/**
 * An in-place snapshot of an object graph: every object reachable from a root (own properties,
 * array elements, Map and Set entries) and the bytes of every ArrayBuffer a typed array views,
 * recorded once and written back by restore(). Objects keep their identity: restore() points
 * every recorded object's properties back at the values they held, so closures that captured
 * objects of the graph (an MMU-notifier listener capturing its VM) stay right. Objects created
 * after the snapshot are simply no longer reachable from the root.
 *
 * The explorer uses it to run every schedule on one world (ReusedWorld in explore/world.ts):
 * rebuilding the VM from the setup steps for every run cost as much as the runs themselves.
 *
 * Every recorded object other than an array, Map or Set is sealed (Object.seal): a property
 * added or deleted later would not be undone by restore(), so it throws instead (ES modules are
 * strict code). What the walk cannot see, and the graph must therefore not hold: state in
 * closures' own variables (a closure may capture objects of the graph, not counters),
 * `#private` fields, entries of module-level WeakMaps keyed by objects of the graph,
 * module-level variables, and non-index properties added to arrays. Objects that cannot be
 * restored (WeakMap, WeakSet, WeakRef, Promise, Date, accessor properties, shared or resizable
 * buffers) make the snapshot throw.
 */

const enum Kind {
  Object,
  Array,
  Map,
  Set,
}

/** writes values[i] to property keys[i] of an object of one shape */
type Assign = (o: object, values: readonly unknown[]) => void;

interface Saved {
  obj: object;
  kind: Kind;
  /** the object's own writable properties' values, in `assign`'s key order */
  values: unknown[];
  assign: Assign;
  /** Array: the elements; Map: key, value, key, value…; Set: the values */
  items: unknown[] | null;
}

interface SavedBuffer {
  buffer: ArrayBuffer;
  /** the whole buffer, to write the recorded bytes back through */
  view: Uint8Array;
  bytes: Uint8Array;
}

const INDEX = /^(?:0|[1-9][0-9]*)$/;

/**
 * One assign function per list of string keys, generated so that each has its own property
 * stores (`o["key"] = v[i]`) that see one or a few object shapes: a generic loop over keys
 * is a megamorphic keyed store per property.
 */
const assigners = new Map<string, Assign>();
function assigner(keys: readonly (string | symbol)[]): Assign {
  if (keys.length === 0) return () => {};
  if (keys.some((k) => typeof k === 'symbol')) {
    return (o, values) => {
      for (let i = 0; i < keys.length; i++) (o as Record<string | symbol, unknown>)[keys[i]!] = values[i];
    };
  }
  const id = JSON.stringify(keys);
  let f = assigners.get(id);
  if (f === undefined) {
    const body = (keys as string[]).map((k, i) => `o[${JSON.stringify(k)}] = v[${i}];`).join('\n');
    f = new Function('o', 'v', body) as Assign;
    assigners.set(id, f);
  }
  return f;
}

/**
 * Every object reachable from `root` (own properties' values, Map and Set entries, and the
 * buffer behind each typed array or DataView), in the order of a depth-first walk, but not
 * `skip`'s objects nor anything reached only through them. GraphSnapshot records this set. Objects of one world that another world built the same way also reaches
 * are shared (module-level tables, scratch buffers, the scenario): a snapshot leaves them out.
 */
export function reachable(root: object, skip: ReadonlySet<object> = new Set()): Set<object> {
  const seen = new Set<object>();
  const stack: unknown[] = [root];
  while (stack.length > 0) {
    const o = stack.pop();
    if (o === null || typeof o !== 'object' || seen.has(o) || skip.has(o)) continue;
    seen.add(o);
    if (ArrayBuffer.isView(o)) {
      if (!skip.has(o.buffer)) seen.add(o.buffer);
      continue;
    }
    if (o instanceof Map) for (const [k, v] of o) stack.push(k, v);
    else if (o instanceof Set) for (const v of o) stack.push(v);
    for (const k of Reflect.ownKeys(o)) {
      const d = Object.getOwnPropertyDescriptor(o, k)!;
      if ('value' in d) stack.push(d.value);
    }
  }
  return seen;
}

export class GraphSnapshot {
  private readonly saved: Saved[] = [];
  private readonly buffers: SavedBuffer[] = [];
  /** objects with a `disposed` flag that was false when the snapshot was taken */
  private readonly disposables: { disposed?: unknown }[] = [];

  /**
   * @param root the graph to record
   * @param skip objects left out with everything only they reach (inputs the graph never
   *   changes, e.g. the scenario)
   */
  constructor(root: object, skip: ReadonlySet<object> = new Set()) {
    for (const o of reachable(root, skip)) {
      // a view's bytes are its buffer's, which the walk reaches as well
      if (ArrayBuffer.isView(o)) continue;
      if (typeof SharedArrayBuffer !== 'undefined' && o instanceof SharedArrayBuffer) throw new Error('GraphSnapshot: a SharedArrayBuffer cannot be restored');
      if (o instanceof ArrayBuffer) {
        // (ES2024: not in this build's lib)
        if ((o as { resizable?: boolean }).resizable) throw new Error('GraphSnapshot: a resizable ArrayBuffer cannot be restored');
        const view = new Uint8Array(o);
        this.buffers.push({ buffer: o, view, bytes: view.slice() });
        continue;
      }
      if (o instanceof WeakMap || o instanceof WeakSet || o instanceof WeakRef || o instanceof Promise || o instanceof Date) {
        throw new Error(`GraphSnapshot: a ${o.constructor.name} cannot be restored`);
      }
      this.record(o);
    }
  }

  /** records one object's own writable properties (and an array's, Map's or Set's entries) */
  private record(o: object): void {
    let kind = Kind.Object;
    let items: unknown[] | null = null;
    if (Array.isArray(o)) {
      kind = Kind.Array;
      items = o.slice();
    } else if (o instanceof Map) {
      kind = Kind.Map;
      items = [];
      for (const [k, v] of o) items.push(k, v);
    } else if (o instanceof Set) {
      kind = Kind.Set;
      items = [...o];
    }
    const keys: (string | symbol)[] = [];
    const values: unknown[] = [];
    for (const k of Reflect.ownKeys(o)) {
      if (kind === Kind.Array && (k === 'length' || (typeof k === 'string' && INDEX.test(k)))) continue;
      const d = Object.getOwnPropertyDescriptor(o, k)!;
      if (!('value' in d)) throw new Error(`GraphSnapshot: accessor property ${String(k)} cannot be restored`);
      // a read-only property cannot change, but what it holds may
      if (!d.writable) continue;
      keys.push(k);
      values.push(d.value);
      if (k === 'disposed' && d.value === false) this.disposables.push(o as { disposed?: unknown });
    }
    // arrays, Maps and Sets grow and shrink; any other object keeps its properties
    if (kind === Kind.Object) Object.seal(o);
    this.saved.push({ obj: o, kind, values, assign: assigner(keys), items });
  }

  /** objects recorded (tests, diagnostics) */
  get objects(): number {
    return this.saved.length;
  }

  /**
   * False when something the snapshot recorded was disposed since (a VM destroyed gives its
   * page-table buffers to module-level pools for later VMs): such a graph must not be restored,
   * or those buffers would have two owners.
   */
  get restorable(): boolean {
    for (const d of this.disposables) if (d.disposed !== false) return false;
    return true;
  }

  /** Puts every recorded object and buffer back as it was when the snapshot was taken. */
  restore(): void {
    if (!this.restorable) throw new Error('GraphSnapshot.restore: part of the graph was disposed');
    for (const b of this.buffers) {
      if (b.buffer.byteLength !== b.bytes.length) throw new Error('GraphSnapshot.restore: an ArrayBuffer was detached');
      b.view.set(b.bytes);
    }
    for (const s of this.saved) {
      s.assign(s.obj, s.values);
      const items = s.items;
      if (items === null) continue;
      if (s.kind === Kind.Array) {
        const a = s.obj as unknown[];
        // (setting an array's length is a runtime call even when it does not change)
        if (a.length !== items.length) a.length = items.length;
        for (let i = 0; i < items.length; i++) a[i] = items[i];
      } else if (s.kind === Kind.Map) {
        const m = s.obj as Map<unknown, unknown>;
        m.clear();
        for (let i = 0; i < items.length; i += 2) m.set(items[i], items[i + 1]);
      } else {
        const set = s.obj as Set<unknown>;
        set.clear();
        for (const v of items) set.add(v);
      }
    }
  }
}
