import assert from "node:assert/strict";
import { throttledLog } from "../../src/server/log-throttle.js";
import { fakeClock } from "../helpers/fake-clock.js";

describe("throttledLog", () => {
  it("logs the first of each kind, then at most one a interval, counting those it left out", () => {
    const clock = fakeClock();
    const lines: [string, number][] = [];
    const log = throttledLog<string>((item, suppressed) => lines.push([item, suppressed]), (item) => item.split(":")[0]!, 1_000, clock.now);
    for (let i = 0; i < 5; i++) log(`a:${i}`);
    log("b:0");
    clock.advance(999);
    log("a:5");
    clock.advance(1);
    log("a:6");
    assert.deepEqual(lines, [
      ["a:0", 0],
      ["b:0", 0],
      ["a:6", 5],
    ]);
  });
});
