export type JsonValue = null | boolean | number | string | JsonValue[] | JsonObject;
export type JsonObject = { [key: string]: JsonValue };

/**
 * Deep-copies a JSON value, so that what a cache stores or hands out never
 * aliases the caller's objects.
 *
 * The rules are JSON's, because every value must survive the trip to a
 * remote cache unchanged: object members that are `undefined` are dropped
 * (as JSON.stringify does); anything JSON cannot represent (NaN or Infinity,
 * a bigint, a function, a class instance such as a Date or a Map, a cycle) is
 * refused with a TypeError that names where it was found.
 */
export function copyJson(value: unknown, path: string): JsonValue {
  return copyValue(value, path, 0);
}

/**
 * Deep-copies JSON that copyJson has already checked: the same result,
 * without checking every string and member again. For values a cache holds
 * and hands out over and over.
 */
export function cloneJson<T extends JsonValue>(value: T): T {
  if (typeof value !== "object" || value === null) return value;
  if (Array.isArray(value)) return value.map((item) => cloneJson(item)) as T;
  const copy: JsonObject = {};
  for (const key of Object.keys(value)) setMember(copy, key, cloneJson(value[key]!));
  return copy as T;
}

/**
 * The UTF-8 length of JSON.stringify(value) less its escape characters
 * (a newline counts one byte, not the two of "\\n"): the bytes of the
 * value's text and of JSON's punctuation. For JSON that copyJson has
 * produced (no undefined members), so that a cache can account for a value
 * in one walk that builds nothing; scanning text for escapes cost more
 * than the rest of an update (Buffer.byteLength is native and vectorised).
 */
export function unescapedJsonBytes(value: JsonValue): number {
  switch (typeof value) {
    case "string":
      return Buffer.byteLength(value) + 2;
    case "number":
      return String(value).length;
    case "boolean":
      return value ? 4 : 5;
  }
  if (value === null) return 4;
  if (Array.isArray(value)) {
    let total = 2 + Math.max(0, value.length - 1);
    for (const item of value) total += unescapedJsonBytes(item);
    return total;
  }
  const keys = Object.keys(value);
  let total = 2 + Math.max(0, keys.length - 1);
  for (const key of keys) total += Buffer.byteLength(key) + 3 + unescapedJsonBytes(value[key]!);
  return total;
}

/**
 * How deeply JSON may nest while it is copied: a guard that turns a cycle
 * into an error instead of a stack overflow. What may be stored is bounded
 * more tightly by how deep protobuf runtimes read (see nesting.ts): about
 * 32 objects, fewer in some places of a message.
 */
export const MAX_JSON_DEPTH = 100;

/** As copyJson, for a value that must be a JSON object. */
export function copyJsonObject(value: unknown, path: string): JsonObject {
  if (!isPlainObject(value)) {
    throw new TypeError(`${path} must be a JSON object, got ${describe(value)}`);
  }
  return copyObject(value, path, 0);
}

/**
 * Returns the value if it is a string that UTF-8 can carry. A lone surrogate
 * cannot be encoded: it would reach a remote cache as U+FFFD, a different
 * string, so it is refused here rather than changed there.
 */
export function checkString(value: unknown, path: string): string {
  if (typeof value !== "string") throw new TypeError(`${path} must be a string, got ${describe(value)}`);
  return checkWellFormed(value, path);
}

function checkWellFormed(value: string, path: string): string {
  if (!value.isWellFormed()) throw new TypeError(`${path} is not well-formed Unicode (it has a lone surrogate)`);
  return value;
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== "object" || value === null) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

export function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (typeof value === "object") {
    const name = Object.getPrototypeOf(value)?.constructor?.name;
    return name && name !== "Object" ? `an instance of ${name}` : "an object";
  }
  switch (typeof value) {
    case "undefined":
      return "undefined";
    case "string":
      return "a string";
    case "function":
      return "a function";
    case "symbol":
      return "a symbol";
    default:
      return `${typeof value} ${String(value)}`;
  }
}

function copyValue(value: unknown, path: string, depth: number): JsonValue {
  switch (typeof value) {
    case "string":
      return checkWellFormed(value, path);
    case "boolean":
      return value;
    case "number":
      if (Number.isFinite(value)) return value;
      break;
    case "object":
      if (value === null) return null;
      if (Array.isArray(value)) return copyArray(value, path, depth);
      if (isPlainObject(value)) return copyObject(value, path, depth);
      break;
  }
  throw new TypeError(`${path} is not JSON: got ${describe(value)}`);
}

function copyArray(value: unknown[], path: string, depth: number): JsonValue[] {
  checkDepth(path, depth);
  // JSON.stringify writes holes and undefined elements as null.
  return Array.from(value, (item, i) =>
    item === undefined ? null : copyValue(item, `${path}[${i}]`, depth + 1),
  );
}

function copyObject(value: Record<string, unknown>, path: string, depth: number): JsonObject {
  checkDepth(path, depth);
  const copy: JsonObject = {};
  for (const key of Object.keys(value)) {
    const member = value[key];
    if (member === undefined) continue;
    const memberPath = memberPathOf(path, key);
    setMember(copy, checkWellFormed(key, `the name of ${memberPath}`), copyValue(member, memberPath, depth + 1));
  }
  return copy;
}

/**
 * Where a member is, as an error names it: `path.key` for a name that reads
 * as an identifier, else `path["key"]` quoted as JSON, so that a name with a
 * dot, a space or a lone surrogate is neither ambiguous nor unprintable.
 */
export function memberPathOf(path: string, key: string): string {
  return IDENTIFIER.test(key) ? `${path}.${key}` : `${path}[${JSON.stringify(key)}]`;
}

const IDENTIFIER = /^[A-Za-z_$][\w$]*$/;

function checkDepth(path: string, depth: number): void {
  if (depth >= MAX_JSON_DEPTH) {
    throw new TypeError(`${path} nests deeper than ${MAX_JSON_DEPTH} levels (or contains itself)`);
  }
}

/**
 * Sets an object member by name, "__proto__" included: plain assignment of
 * that name would replace the object's prototype instead of adding a member.
 */
export function setMember(target: Record<string, unknown>, key: string, value: unknown): void {
  if (key === "__proto__") {
    Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
  } else {
    target[key] = value;
  }
}
