// A client process that watches a replica's changes (WatchChanges) and, when
// told on stdin, reports what it was told: for tests that stop it (SIGSTOP)
// so that it reads nothing at all, as a stuck client would.
import { createInterface } from "node:readline";
import { openRawStream } from "./raw-stream.js";

const stream = openRawStream(process.argv[2]!);
let keys = 0;
let everything = false;
stream.send({ operations: [{ id: 1, operation: { case: "watch", value: {} } }] });
void (async () => {
  for (;;) {
    for (const { result } of (await stream.next()).results) {
      if (result.case !== "invalidation") continue;
      keys += result.value.keys.length;
      everything ||= result.value.all;
    }
    if (keys === 0 && !everything) process.stdout.write("watching\n");
  }
})();
createInterface({ input: process.stdin }).on("line", () => {
  process.stdout.write(`${JSON.stringify({ keys, everything })}\n`);
  stream.close();
  process.exit(0);
});
