/**
 * Where a record is: its segment times SEGMENT_SPAN plus its offset in the
 * segment. One number, so that a column of them is a Float64Array.
 */
export type Location = number;

/** Each record starts with its owner and its length, 4 bytes each. */
export const RECORD_HEADER_BYTES = 8;

export interface ArenaOptions {
  /** The unit the arena takes from memory and gives back. Default 1 MiB; records above a quarter of it get a segment of their own, sized to fit. */
  segmentBytes?: number;
  /** Dead bytes tolerated before compacting, or an eighth of the live bytes if more. Default 2 segments. */
  minDeadBytes?: number;
}
/** Emptied segments kept for reuse, so that steady churn takes nothing new from the allocator. */
const SEGMENTS_POOLED = 1;

const SEGMENT_SPAN = 2 ** 31;
/** The owner written over a freed record, so that compaction skips it without asking. */
const DEAD = -(2 ** 31);
/** A segment that is not open: its id is free. */
const CLOSED = -1;

/**
 * Records of bytes, each with an owner (a number its user chooses), kept in
 * large Buffers outside the garbage-collected heap: a million records are a
 * few dozen objects to the collector, and memory comes back as whole
 * segments that are reused, not as a million small frees.
 *
 * Records are appended to the open segment, as in a log. Freeing one only
 * counts its bytes dead; a segment with nothing live is released at once,
 * and when the dead bytes pass a few segments or an eighth of the live ones
 * the sparsest segments are compacted: their live records are copied to
 * the open segment and `moved` tells their owners where they went. So the
 * memory held is the live bytes plus a bounded slack, whatever the mix of
 * sizes, with no size classes to fill unevenly. Under insertion-order
 * eviction records die in the order they were written, and whole segments
 * empty without any copying.
 */
export class SegmentArena {
  readonly #moved: (owner: number, location: Location) => void;
  readonly #segmentBytes: number;
  readonly #largeRecordBytes: number;
  readonly #minDeadBytes: number;
  #segments: (Buffer | undefined)[] = [];
  /** Live record bytes by segment. */
  #live = new Float64Array(16);
  /** Bytes written by segment (for the open one, so far); CLOSED: the id is free. */
  #used = new Float64Array(16).fill(CLOSED);
  #freeIds: number[] = [];
  #pool: Buffer[] = [];
  #open = -1;
  #liveBytes = 0;
  #deadBytes = 0;
  #heldBytes = 0;
  #compacting = false;

  /** `moved` is called for each record compaction moves, with its owner and its new location. */
  constructor(moved: (owner: number, location: Location) => void, options: ArenaOptions = {}) {
    this.#moved = moved;
    this.#segmentBytes = options.segmentBytes ?? 1 << 20;
    this.#largeRecordBytes = this.#segmentBytes / 4;
    this.#minDeadBytes = options.minDeadBytes ?? 2 * this.#segmentBytes;
  }

  /** Bytes of records in use, headers included. */
  get liveBytes(): number {
    return this.#liveBytes;
  }

  /** Bytes of freed records and of the unwritten tails of closed segments, not yet given back. */
  get deadBytes(): number {
    return this.#deadBytes;
  }

  /** Bytes of segments held, pooled ones included: what the arena costs in memory. */
  get heldBytes(): number {
    return this.#heldBytes + this.#pool.length * this.#segmentBytes;
  }

  /**
   * Makes room for a record of `length` bytes owned by `owner` (which must
   * not be negative 2^31) and returns where; its bytes are the caller's to
   * write at dataOffset(location). Compaction may run first.
   */
  place(owner: number, length: number): Location {
    const size = RECORD_HEADER_BYTES + length;
    let segment: number;
    let offset: number;
    if (size > this.#largeRecordBytes) {
      segment = this.#openSegment(Buffer.allocUnsafeSlow(size));
      offset = 0;
      this.#used[segment] = size;
    } else {
      if (!this.#openHasRoom(size)) {
        this.#openNext(!this.#compacting);
        // Compacting may have filled the segment it opened: then one more, without compacting.
        if (!this.#openHasRoom(size)) this.#openNext(false);
      }
      segment = this.#open;
      offset = this.#used[segment]!;
      this.#used[segment] = offset + size;
    }
    const buffer = this.#segments[segment]!;
    buffer.writeInt32LE(owner, offset);
    buffer.writeInt32LE(length, offset + 4);
    this.#live[segment]! += size;
    this.#liveBytes += size;
    return segment * SEGMENT_SPAN + offset;
  }

  /** Frees the record: its bytes count as dead until its segment is released or compacted. */
  free(location: Location): void {
    const segment = segmentOf(location);
    const offset = location - segment * SEGMENT_SPAN;
    const buffer = this.#segments[segment]!;
    const size = RECORD_HEADER_BYTES + buffer.readInt32LE(offset + 4);
    buffer.writeInt32LE(DEAD, offset);
    this.#live[segment]! -= size;
    this.#liveBytes -= size;
    this.#deadBytes += size;
    if (this.#live[segment] === 0 && segment !== this.#open) this.#release(segment);
  }

  /** The segment that holds the record. */
  buffer(location: Location): Buffer {
    return this.#segments[segmentOf(location)]!;
  }

  /** Where the record's bytes start in its segment. */
  dataOffset(location: Location): number {
    return location - segmentOf(location) * SEGMENT_SPAN + RECORD_HEADER_BYTES;
  }

  /** The record's length, as placed. */
  length(location: Location): number {
    return this.buffer(location).readInt32LE(this.dataOffset(location) - 4);
  }

  /** Frees every record and every segment. */
  clear(): void {
    this.#segments = [];
    this.#live = new Float64Array(16);
    this.#used = new Float64Array(16).fill(CLOSED);
    this.#freeIds = [];
    this.#pool = [];
    this.#open = -1;
    this.#liveBytes = this.#deadBytes = this.#heldBytes = 0;
  }

  #openHasRoom(size: number): boolean {
    return this.#open >= 0 && this.#used[this.#open]! + size <= this.#segmentBytes;
  }

  /** Closes the open segment (its unwritten tail is dead from now on) and opens another, then compacts if asked and due. */
  #openNext(compact: boolean): void {
    const closing = this.#open;
    if (closing >= 0) {
      this.#deadBytes += this.#segmentBytes - this.#used[closing]!;
      this.#open = -1;
      if (this.#live[closing] === 0) this.#release(closing);
    }
    this.#open = this.#openSegment(this.#pool.pop() ?? Buffer.allocUnsafeSlow(this.#segmentBytes));
    if (compact) this.#compact();
  }

  #openSegment(buffer: Buffer): number {
    const segment = this.#freeIds.pop() ?? this.#segments.length;
    if (segment >= this.#live.length) {
      this.#live = grown(this.#live, 0);
      this.#used = grown(this.#used, CLOSED);
    }
    this.#segments[segment] = buffer;
    this.#live[segment] = 0;
    this.#used[segment] = 0;
    this.#heldBytes += buffer.length;
    return segment;
  }

  /** Gives back a segment with nothing live: to the pool if it is a standard one and the pool has room. */
  #release(segment: number): void {
    const buffer = this.#segments[segment]!;
    this.#deadBytes -= buffer.length;
    this.#heldBytes -= buffer.length;
    if (buffer.length === this.#segmentBytes && this.#pool.length < SEGMENTS_POOLED) this.#pool.push(buffer);
    this.#segments[segment] = undefined;
    this.#used[segment] = CLOSED;
    this.#freeIds.push(segment);
  }

  /**
   * While the dead bytes are past their allowance, moves the live records
   * of the sparsest segment to the open one and releases it. A segment at
   * least seven eighths live is never worth it: past that, the slack is
   * already within an eighth of what is held.
   */
  #compact(): void {
    this.#compacting = true;
    try {
      for (let rounds = 0; rounds < 64 && this.#deadBytes > Math.max(this.#minDeadBytes, this.#liveBytes / 8); rounds++) {
        const sparsest = this.#sparsest();
        if (sparsest < 0) return;
        this.#evacuate(sparsest);
      }
    } finally {
      this.#compacting = false;
    }
  }

  #sparsest(): number {
    let best = -1;
    let bestLive = (this.#segmentBytes * 7) / 8;
    for (let segment = 0; segment < this.#segments.length; segment++) {
      const buffer = this.#segments[segment];
      if (!buffer || segment === this.#open || buffer.length !== this.#segmentBytes) continue;
      if (this.#live[segment]! < bestLive) [best, bestLive] = [segment, this.#live[segment]!];
    }
    return best;
  }

  #evacuate(segment: number): void {
    const source = this.#segments[segment]!;
    const end = this.#used[segment]!;
    for (let offset = 0; offset < end; ) {
      const owner = source.readInt32LE(offset);
      const length = source.readInt32LE(offset + 4);
      const size = RECORD_HEADER_BYTES + length;
      if (owner !== DEAD) {
        const moved = this.place(owner, length);
        source.copy(this.buffer(moved), this.dataOffset(moved), offset + RECORD_HEADER_BYTES, offset + size);
        this.#live[segment]! -= size;
        this.#liveBytes -= size;
        this.#deadBytes += size;
        this.#moved(owner, moved);
      }
      offset += size;
    }
    this.#release(segment);
  }
}

function segmentOf(location: Location): number {
  return Math.floor(location / SEGMENT_SPAN);
}

function grown(column: Float64Array<ArrayBuffer>, fill: number): Float64Array<ArrayBuffer> {
  const bigger = new Float64Array(column.length * 2).fill(fill);
  bigger.set(column);
  return bigger;
}
