import { InMemoryCache } from "../../src/index.js";
import { fakeClock } from "../helpers/fake-clock.js";
import { policyBehaviour } from "../helpers/policy-behaviour.js";

describe("InMemoryCache policies", () => {
  policyBehaviour(async (settings) => {
    const clock = fakeClock();
    const cache = new InMemoryCache({ ...settings, now: clock.now, reclaimIntervalMs: 0 });
    return { cache, advance: async (ms) => clock.advance(ms) };
  });
});
