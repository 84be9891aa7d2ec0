/**
 * Structural equality of record values, for the operators that must not emit a change that
 * changes nothing (`dropUnchanged`, `groupAggregate`): the value they compare with was stored in
 * state and read back through msgpack, so identity never holds and only the data may be compared.
 * The rules follow what a consumer of the emitted JSON would see: key order does not matter, a
 * field that is `undefined` is the same as a missing one (JSON drops both), NaN equals NaN.
 */

/** Whether `a` and `b` hold the same data (plain objects, arrays, dates, byte arrays, primitives). */
export function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a === "number" && typeof b === "number") return Number.isNaN(a) && Number.isNaN(b);
  if (a === null || b === null || typeof a !== "object" || typeof b !== "object") return false;
  if (Array.isArray(a) || Array.isArray(b)) {
    if (!Array.isArray(a) || !Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!deepEqual(a[i], b[i])) return false;
    return true;
  }
  if (a instanceof Date || b instanceof Date) return a instanceof Date && b instanceof Date && Object.is(a.getTime(), b.getTime());
  if (ArrayBuffer.isView(a) || ArrayBuffer.isView(b)) {
    if (!ArrayBuffer.isView(a) || !ArrayBuffer.isView(b) || a.byteLength !== b.byteLength) return false;
    const x = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
    const y = new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
    for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
    return true;
  }
  if (a instanceof Map || b instanceof Map) {
    if (!(a instanceof Map) || !(b instanceof Map) || a.size !== b.size) return false;
    for (const [k, v] of a) if (!b.has(k) || !deepEqual(v, b.get(k))) return false;
    return true;
  }
  const x = a as Record<string, unknown>;
  const y = b as Record<string, unknown>;
  const xs = Object.keys(x).filter((k) => x[k] !== undefined);
  const ys = Object.keys(y).filter((k) => y[k] !== undefined);
  if (xs.length !== ys.length) return false;
  for (const k of xs) if (!Object.hasOwn(y, k) || !deepEqual(x[k], y[k])) return false;
  return true;
}
