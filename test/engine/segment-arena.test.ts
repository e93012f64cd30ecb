import assert from "node:assert/strict";
import fc from "fast-check";
import { RECORD_HEADER_BYTES, SegmentArena, type Location } from "../../src/engine/segment-arena.js";

/**
 * The arena under random churn against a plain map of what each owner
 * wrote: every record reads back as written whatever compaction moved, and
 * the memory held never passes the live bytes plus the stated slack.
 */

const SEGMENT_BYTES = 512;
const MIN_DEAD_BYTES = 1024;
const POOLED_SEGMENTS = 1;
/** Around the largest record a shared segment takes (a quarter of it, header included), and well past it. */
const LENGTHS = [0, 1, 17, 100, SEGMENT_BYTES / 4 - RECORD_HEADER_BYTES, SEGMENT_BYTES / 4 - RECORD_HEADER_BYTES + 1, 300, 2000];

type Command = { kind: "place"; length: number } | { kind: "free"; pick: number };

const commandArbitrary: fc.Arbitrary<Command> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ kind: fc.constant("place" as const), length: fc.constantFrom(...LENGTHS) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("free" as const), pick: fc.nat() }) },
);

function bytesFor(owner: number, length: number): Buffer {
  const bytes = Buffer.alloc(length);
  for (let i = 0; i < length; i++) bytes[i] = (owner * 13 + i) & 0xff;
  return bytes;
}

describe("SegmentArena", function () {
  this.timeout(60_000);

  it("reads every record back as written, and holds no more than the live bytes and the slack, under random churn", () => {
    fc.assert(
      fc.property(fc.array(commandArbitrary, { minLength: 50, maxLength: 400 }), (commands) => {
        const where = new Map<number, Location>();
        const arena = new SegmentArena((owner, location) => where.set(owner, location), { segmentBytes: SEGMENT_BYTES, minDeadBytes: MIN_DEAD_BYTES });
        const written = new Map<number, Buffer>();
        let nextOwner = 0;
        for (const command of commands) {
          if (command.kind === "place") {
            const owner = nextOwner++;
            const bytes = bytesFor(owner, command.length);
            const location = arena.place(owner, bytes.length);
            bytes.copy(arena.buffer(location), arena.dataOffset(location));
            where.set(owner, location);
            written.set(owner, bytes);
            const largest = Math.max(0, ...[...written.values()].map((b) => b.length + RECORD_HEADER_BYTES));
            const slack = Math.max(MIN_DEAD_BYTES, arena.liveBytes / 7) + 2 * SEGMENT_BYTES + largest + POOLED_SEGMENTS * SEGMENT_BYTES;
            assert.ok(arena.heldBytes <= arena.liveBytes + slack, `held ${arena.heldBytes} for ${arena.liveBytes} live`);
          } else if (written.size > 0) {
            const owners = [...written.keys()];
            const owner = owners[command.pick % owners.length]!;
            arena.free(where.get(owner)!);
            written.delete(owner);
            where.delete(owner);
          }
          assert.equal(arena.liveBytes, [...written.values()].reduce((total, b) => total + b.length + RECORD_HEADER_BYTES, 0));
          for (const [owner, bytes] of written) {
            const location = where.get(owner)!;
            assert.equal(arena.length(location), bytes.length);
            const start = arena.dataOffset(location);
            assert.deepEqual(arena.buffer(location).subarray(start, start + bytes.length), bytes, `owner ${owner}`);
          }
        }
      }),
      { numRuns: 200 },
    );
  });

  it("gives whole segments back without copying when records die in the order they were written", () => {
    let moves = 0;
    const arena = new SegmentArena(() => moves++, { segmentBytes: SEGMENT_BYTES, minDeadBytes: 0 });
    const placed: Location[] = [];
    for (let i = 0; i < 10_000; i++) {
      placed.push(arena.place(i, 40));
      if (placed.length > 100) arena.free(placed.shift()!);
    }
    assert.equal(moves, 0);
    // 100 live records of 48 bytes fill 10 segments, with one open and the pool.
    assert.ok(arena.heldBytes <= (11 + POOLED_SEGMENTS) * SEGMENT_BYTES, `held ${arena.heldBytes}`);
  });

  it("compacts what random frees leave sparse, telling each owner where its record went", () => {
    const where = new Map<number, Location>();
    const arena = new SegmentArena((owner, location) => where.set(owner, location), { segmentBytes: SEGMENT_BYTES, minDeadBytes: 0 });
    for (let i = 0; i < 1_000; i++) where.set(i, arena.place(i, 40));
    // Free nine records in ten: what is left is spread thin over every segment.
    for (let i = 0; i < 1_000; i++) if (i % 10 !== 0) arena.free(where.get(i)!);
    const before = arena.heldBytes;
    for (let i = 1_000; i < 1_100; i++) where.set(i, arena.place(i, 40));
    assert.ok(arena.heldBytes < before / 2, `held ${arena.heldBytes}, was ${before}`);
    for (let i = 0; i < 1_000; i += 10) assert.equal(arena.length(where.get(i)!), 40);
  });

  it("holds nothing after clear", () => {
    const arena = new SegmentArena(() => {}, { segmentBytes: SEGMENT_BYTES });
    for (let i = 0; i < 100; i++) arena.place(i, 100);
    arena.clear();
    assert.equal(arena.heldBytes, 0);
    assert.equal(arena.liveBytes, 0);
  });
});
