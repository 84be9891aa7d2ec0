/**
 * Copies of records handed between chained functions (actor/chain.ts, design note ch).
 *
 * After a function with keyed or broadcast state the next function of a chain gets a copy of each
 * record, so that it cannot change an object the first keeps in its state. `structuredClone` does
 * that for any value, but it serialises and deserialises even a three-field object (~1 µs, and a
 * buffer per record: 5 % of what the latency benchmark's worker allocated). Records are nearly
 * always plain data — what JSON or msgpack carried in — and those are copied here field by field;
 * anything else (a Date, a Map, a typed array, a class instance, a function, a cycle, an array
 * with holes) goes to `structuredClone` whole, so the result is what it would give, with one
 * difference no record can tell from its fields: an object reachable twice is copied twice.
 */

/** Thrown inside the plain copy when the value needs `structuredClone`. */
const NOT_PLAIN = Symbol("not plain");
/** Deeper than this is almost surely a cycle; structuredClone copies those. */
const MAX_DEPTH = 64;

function plainCopy(value: unknown, depth: number): unknown {
  if (value === null || typeof value !== "object") {
    if (typeof value === "function" || typeof value === "symbol") throw NOT_PLAIN;
    return value;
  }
  if (depth > MAX_DEPTH) throw NOT_PLAIN;
  const proto = Object.getPrototypeOf(value);
  if (proto === Array.prototype) {
    const a = value as unknown[];
    const n = a.length;
    const out = new Array<unknown>(n);
    for (let i = 0; i < n; i++) {
      if (!(i in a)) throw NOT_PLAIN;
      out[i] = plainCopy(a[i], depth + 1);
    }
    // Named properties on an array (structuredClone keeps them) are not plain data.
    if (Object.keys(a).length !== n) throw NOT_PLAIN;
    return out;
  }
  if (proto !== Object.prototype && proto !== null) throw NOT_PLAIN;
  const o = value as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const k in o) {
    // JSON.parse makes "__proto__" an own property; an assignment would set the prototype instead.
    if (k === "__proto__") Object.defineProperty(out, k, { value: plainCopy(o[k], depth + 1), enumerable: true, writable: true, configurable: true });
    else out[k] = plainCopy(o[k], depth + 1);
  }
  return out;
}

/**
 * A copy of `record` that shares no object with it, equal to `structuredClone(record)` (which it
 * falls back to, and whose `DataCloneError` it throws for what cannot be copied).
 *
 *   const copy = copyRecord({ user: "u1", tags: ["a"] }); // a new object and a new array
 */
export function copyRecord<T>(record: T): T {
  try {
    return plainCopy(record, 0) as T;
  } catch (e) {
    if (e !== NOT_PLAIN) throw e;
    return structuredClone(record);
  }
}
