import assert from "node:assert/strict";
import { ClusterNodeSockets, NEVER_READY_ATTEMPTS } from "../../src/redis/cluster-node-sockets.js";

describe("ClusterNodeSockets", () => {
  const backoff = (retries: number) => 50 * (retries + 1);
  const refused = new Error("connect ECONNREFUSED");

  function sockets() {
    const gaveUp: string[] = [];
    return { sockets: new ClusterNodeSockets(backoff, (address) => gaveUp.push(address)), gaveUp };
  }

  it("gives a node's host and port, IPv6 too", () => {
    const { sockets: made } = sockets();
    assert.deepEqual([made.socketFor("127.0.0.1:7000").host, made.socketFor("127.0.0.1:7000").port], ["127.0.0.1", 7000]);
    assert.deepEqual([made.socketFor("::1:7001").host, made.socketFor("::1:7001").port], ["::1", 7001]);
  });

  it(`lets a client that never reached its node try ${NEVER_READY_ATTEMPTS} times, then give up naming the address`, () => {
    const { sockets: made, gaveUp } = sockets();
    const { reconnectStrategy } = made.socketFor("10.0.0.9:7000");
    for (let retries = 0; retries < NEVER_READY_ATTEMPTS - 1; retries++) {
      assert.equal(reconnectStrategy(retries, refused), backoff(retries));
    }
    assert.deepEqual(gaveUp, []);
    const given = reconnectStrategy(NEVER_READY_ATTEMPTS - 1, refused);
    assert.ok(given instanceof Error);
    assert.equal(given.message, "no Redis answers at 10.0.0.9:7000, where the Cluster's slot map has a node: connect ECONNREFUSED");
    assert.deepEqual(gaveUp, ["10.0.0.9:7000"]);
  });

  it("lets a client that has been ready retry for ever, as a single Redis's does", () => {
    const { sockets: made, gaveUp } = sockets();
    const { reconnectStrategy } = made.socketFor("127.0.0.1:7000");
    made.ready("127.0.0.1:7000");
    for (let retries = 0; retries < 1_000; retries++) assert.equal(reconnectStrategy(retries, refused), backoff(retries));
    assert.deepEqual(gaveUp, []);
  });

  it("counts only readiness since the client was made, and only at its own address", () => {
    const { sockets: made, gaveUp } = sockets();
    made.ready("127.0.0.1:7000");
    const later = made.socketFor("127.0.0.1:7000").reconnectStrategy;
    const elsewhere = made.socketFor("127.0.0.1:7001").reconnectStrategy;
    made.ready("127.0.0.1:7002");
    assert.ok(later(NEVER_READY_ATTEMPTS - 1, refused) instanceof Error, "an earlier client's readiness is not this one's");
    assert.ok(elsewhere(NEVER_READY_ATTEMPTS - 1, refused) instanceof Error, "another node's readiness is not this one's");
    assert.deepEqual(gaveUp, ["127.0.0.1:7000", "127.0.0.1:7001"]);
  });
});
