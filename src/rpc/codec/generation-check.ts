import { ScalarType, type DescField, type DescMessage } from "@bufbuild/protobuf";
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";
import { isUtf8 } from "node:buffer";
import {
  ChatMessageSchema,
  GenerationSchema,
  InvalidToolCallSchema,
  ToolCallChunkSchema,
  ToolCallSchema,
  UsageMetadataSchema,
} from "../../../gen/llmcache/v1/cache_pb.js";
import { MAX_GENERATION_NESTING, nestingProblem } from "../../nesting.js";
import { DecodeError, decodeProblem } from "../codec.js";
import { scalarWireType, wrongWireType } from "./wire.js";

/**
 * Checks a generation the server is to store on its bytes, building
 * nothing: the server keeps the bytes as they came, and must keep only
 * what every client reads back. The rules come from the descriptors of
 * llmcache.v1.Generation and the messages below it, so a field added to
 * the .proto is checked as soon as it is generated:
 *
 * - every field of a known number has its wire type; unknown fields are
 *   skipped, as protobuf requires (but a map entry holds only its key and
 *   value: protobuf-es cannot skip anything else there);
 * - every string, map keys included, is valid UTF-8;
 * - every length stays within its message;
 * - no message is nested more than MAX_GENERATION_NESTING levels below the
 *   generation (the depth Python's protobuf reads in every reply), and
 *   none 100 levels deep (protobuf-es's recursion limit, which bounds the
 *   walk);
 * - a google.protobuf.Value or ListValue field (content blocks, artifact),
 *   which the TypeScript client turns into JSON with protobuf-es's toJson,
 *   holds JSON: every Value has a kind, and no number is NaN or infinite.
 *   A Struct field is read leniently (a Value without a kind is null), as
 *   protobuf-es reads it.
 *
 * A failure is a DecodeError naming the generation, and the place for a
 * problem of JSON: "generations[0].message.additional_kwargs nests 98
 * protobuf message levels ...". A problem of encoding anywhere in the
 * generation is told before a problem of JSON, and nesting last.
 */
export function checkGeneration(bytes: Uint8Array, start: number, end: number, index: number): void {
  const reader = new BinaryReader(bytes);
  reader.pos = start;
  const walk: Walk = { bytes, index, path: [], strict: false, root: undefined, valueProblem: undefined, tooDeep: undefined };
  try {
    check(GENERATION, reader, end, 0, walk);
  } catch (error) {
    throw new DecodeError(`generations[${index}]: ${error instanceof DecodeError ? error.message : decodeProblem(error)}`, { cause: error });
  }
  if (walk.valueProblem !== undefined) throw new DecodeError(walk.valueProblem);
  if (walk.tooDeep !== undefined) throw new DecodeError(nestingProblem(walk.tooDeep.place, walk.tooDeep.levels));
}

/** protobuf-es reads no message deeper than this, counting the generation; nor does the check, and it says so in the same words. */
const RECURSION_LIMIT = 100;

/** A message's fields by number, and what the message is for the checks. */
interface Shape {
  typeName: string;
  kind: "message" | "value" | "entry";
  rules: (Rule | undefined)[];
  /** A map entry whose value is a google.protobuf.Value: strict JSON needs the value. */
  needsValue?: boolean;
}

/** A field: its wire type, and what its body must be. */
interface Rule {
  /** "google.protobuf.Value.number_value", for messages. */
  name: string;
  /** Its name in a generation's places: "additional_kwargs", "content". */
  label: string;
  wireType: WireType;
  body: "varint" | "64-bit" | "32-bit" | "string" | "bytes" | "message";
  shape?: Shape;
  repeated: boolean;
  /** Where JSON starts, and how it is read: a Struct leniently, a Value or ListValue strictly. */
  json?: "lenient" | "strict";
}

/** One generation's check in progress. */
interface Walk {
  bytes: Uint8Array;
  index: number;
  /** The fields (their labels), and indexes of repeated ones, from the generation down to where the walk is, JSON excluded. */
  path: [string, number][];
  /** In JSON that must be strict (see checkGeneration). */
  strict: boolean;
  /** The field where the JSON being walked starts (its label). */
  root: string | undefined;
  valueProblem: string | undefined;
  tooDeep: { place: string; levels: number } | undefined;
}

/**
 * Walks the message in bytes[reader.pos, end) and everything below it.
 * `depth` is the message's level below the generation (the generation's
 * own is 0); returns the deepest level below it.
 */
function check(shape: Shape, reader: BinaryReader, end: number, depth: number, walk: Walk): number {
  if (depth >= RECURSION_LIMIT) throw new DecodeError(`maximum recursion depth of ${RECURSION_LIMIT} reached`);
  let deepest = depth;
  let holdsValue = false;
  let counts: number[] | undefined;
  while (reader.pos < end) {
    const key = readTag(reader, walk.bytes);
    const number = key >>> 3;
    const wireType = key & 7;
    const rule = shape.rules[number];
    if (rule === undefined) {
      if (shape.kind === "entry") throw new DecodeError(`${shape.typeName} has a field ${number}: a map entry holds only its key (1) and value (2)`);
      reader.skip(wireType, number, RECURSION_LIMIT - 1 - depth);
      continue;
    }
    if (wireType !== rule.wireType) throw wrongWireType(rule.name, wireType, rule.wireType);
    // Every field of a Value is one of its kinds; an entry's field 2 is its value.
    if (shape.kind === "value" || (shape.kind === "entry" && number === 2)) holdsValue = true;
    switch (rule.body) {
      case "varint":
        reader.bool(); // reads a varint of up to 10 bytes, as protobuf-es does, without making a BigInt
        break;
      case "64-bit":
        if (reader.pos + 8 > end) throw new DecodeError("premature EOF");
        if (walk.strict && shape.kind === "value") {
          if (!Number.isFinite(reader.double())) walk.valueProblem ??= `${placeOf(walk)}: google.protobuf.Value cannot be NaN or Infinity`;
        } else {
          reader.pos += 8;
        }
        break;
      case "32-bit":
        reader.pos += 4;
        break;
      case "string":
      case "bytes": {
        const bodyEnd = bodyEndOf(reader, end);
        if (rule.body === "string" && !isUtf8At(walk.bytes, reader.pos, bodyEnd)) throw new DecodeError("a string field is not valid UTF-8");
        reader.pos = bodyEnd;
        break;
      }
      case "message": {
        const bodyEnd = bodyEndOf(reader, end);
        let levels: number;
        if (rule.json) {
          levels = checkJson(rule, reader, bodyEnd, depth + 1, walk);
        } else if (walk.root !== undefined) {
          levels = check(rule.shape!, reader, bodyEnd, depth + 1, walk); // within JSON, which has no path of its own
        } else {
          const index = rule.repeated ? ((counts ??= [])[number] = (counts[number] ?? -1) + 1) : -1;
          walk.path.push([rule.label, index]);
          levels = check(rule.shape!, reader, bodyEnd, depth + 1, walk);
          walk.path.pop();
        }
        if (levels > deepest) deepest = levels;
        break;
      }
    }
  }
  if (reader.pos > end) throw new DecodeError("premature EOF");
  if (walk.strict && !holdsValue && (shape.kind === "value" || shape.needsValue)) {
    walk.valueProblem ??= `${placeOf(walk)}: google.protobuf.Value must have a value`;
  }
  return deepest;
}

/** Walks JSON (a Struct, Value or ListValue) that starts at a field of one of llmcache's messages. */
function checkJson(rule: Rule, reader: BinaryReader, end: number, depth: number, walk: Walk): number {
  walk.strict = rule.json === "strict";
  walk.root = rule.label;
  const levels = check(rule.shape!, reader, end, depth, walk);
  if (levels > MAX_GENERATION_NESTING) walk.tooDeep ??= { place: placeOf(walk), levels };
  walk.strict = false;
  walk.root = undefined;
  return levels;
}

/** Reads a length and returns where the body ends, which must be within the message. */
function bodyEndOf(reader: BinaryReader, end: number): number {
  const bodyEnd = reader.uint32() + reader.pos;
  if (bodyEnd > end) throw new DecodeError("premature EOF");
  return bodyEnd;
}

/** reader.tag() as one number, without the array: (field number << 3) | wire type, checked as protobuf-es checks it. */
function readTag(reader: BinaryReader, bytes: Uint8Array): number {
  const start = reader.pos;
  const key = reader.uint32();
  const length = reader.pos - start;
  if (length > 5 || (length === 5 && bytes[reader.pos - 1]! > 0x0f)) throw new Error("illegal tag: varint overflows uint32");
  if (key >>> 3 <= 0 || (key & 7) > 5) throw new Error(`illegal tag: field no ${key >>> 3} wire type ${key & 7}`);
  return key;
}

/** isUtf8 of bytes[start, end), without a subarray for short ASCII (most keys of JSON objects). */
function isUtf8At(bytes: Uint8Array, start: number, end: number): boolean {
  if (end - start <= 16) {
    let i = start;
    while (i < end && bytes[i]! < 0x80) i++;
    if (i === end) return true;
  }
  return isUtf8(bytes.subarray(start, end));
}

/** Where the walk is, as a path in the generation: "generations[0].message.tool_calls[1].args". */
function placeOf(walk: Walk): string {
  let place = `generations[${walk.index}]`;
  for (const [label, index] of walk.path) place += `.${label}${index >= 0 ? `[${index}]` : ""}`;
  return walk.root === undefined ? place : `${place}.${walk.root}`;
}

// The rules, compiled once from the descriptors.

/** The fields whose place in a Generation has another name than in the .proto. */
const GENERATION_NAMES = new Map<DescField, string>([
  [GenerationSchema.field.generationInfo, "generationInfo"],
  [ChatMessageSchema.field.blocks, "content"],
  [ChatMessageSchema.field.extra, "extra fields"],
  [ToolCallSchema.field.extra, "extra fields"],
  [InvalidToolCallSchema.field.extra, "extra fields"],
  [ToolCallChunkSchema.field.extra, "extra fields"],
  [UsageMetadataSchema.field.extra, "extra fields"],
]);

const JSON_TYPES: Record<string, "lenient" | "strict"> = {
  "google.protobuf.Struct": "lenient",
  "google.protobuf.Value": "strict",
  "google.protobuf.ListValue": "strict",
};

const shapes = new WeakMap<DescMessage, Shape>();

function shapeOf(desc: DescMessage): Shape {
  let shape = shapes.get(desc);
  if (shape) return shape;
  shape = { typeName: desc.typeName, kind: desc.typeName === "google.protobuf.Value" ? "value" : "message", rules: [] };
  shapes.set(desc, shape); // before its fields: Struct, Value and ListValue hold each other
  for (const field of desc.fields) shape.rules[field.number] = ruleOf(field, desc);
  return shape;
}

function ruleOf(field: DescField, parent: DescMessage): Rule {
  const name = `${parent.typeName}.${field.name}`;
  const label = GENERATION_NAMES.get(field) ?? field.name;
  switch (field.fieldKind) {
    case "scalar":
      return scalarRule(name, label, field.scalar, field.utf8Validation, false);
    case "enum":
      return { name, label, wireType: WireType.Varint, body: "varint", repeated: false };
    case "message":
      return messageRule(name, label, field.message, parent, field.delimitedEncoding, false);
    case "list":
      if (field.listKind === "message") return messageRule(name, label, field.message, parent, field.delimitedEncoding, true);
      if (field.listKind === "scalar" && (field.scalar === ScalarType.STRING || field.scalar === ScalarType.BYTES)) {
        return scalarRule(name, label, field.scalar, field.utf8Validation, true);
      }
      throw new Error(`${name}: the generation check does not know repeated numbers (packed or not) yet`);
    case "map": {
      const entry: Shape = { typeName: `${name} entry`, kind: "entry", rules: [] };
      entry.rules[1] = scalarRule(`${name} key`, "key", field.mapKey, field.utf8Validation, false);
      if (field.mapKind === "message") {
        entry.rules[2] = messageRule(`${name} value`, "value", field.message, parent, false, false);
        entry.needsValue = field.message.typeName === "google.protobuf.Value";
      } else if (field.mapKind === "enum") {
        entry.rules[2] = { name: `${name} value`, label: "value", wireType: WireType.Varint, body: "varint", repeated: false };
      } else {
        entry.rules[2] = scalarRule(`${name} value`, "value", field.scalar, field.utf8Validation, false);
      }
      return { name, label, wireType: WireType.LengthDelimited, body: "message", shape: entry, repeated: true };
    }
  }
}

function scalarRule(name: string, label: string, scalar: ScalarType, utf8Validation: boolean, repeated: boolean): Rule {
  const wireType = scalarWireType(scalar);
  const body =
    scalar === ScalarType.STRING ? (utf8Validation ? "string" : "bytes")
    : scalar === ScalarType.BYTES ? "bytes"
    : wireType === WireType.Bit64 ? "64-bit"
    : wireType === WireType.Bit32 ? "32-bit"
    : "varint";
  return { name, label, wireType, body, repeated };
}

function messageRule(name: string, label: string, message: DescMessage, parent: DescMessage, delimited: boolean, repeated: boolean): Rule {
  if (delimited) throw new Error(`${name}: the generation check does not know delimited (group) encoding`);
  const rule: Rule = { name, label, wireType: WireType.LengthDelimited, body: "message", shape: shapeOf(message), repeated };
  // JSON starts where one of llmcache's messages holds a Struct, Value or ListValue.
  const json = parent.typeName in JSON_TYPES ? undefined : JSON_TYPES[message.typeName];
  if (json) rule.json = json;
  return rule;
}

const GENERATION = shapeOf(GenerationSchema);
