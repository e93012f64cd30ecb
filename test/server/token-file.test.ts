import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { TokenFile } from "../../src/server/auth/token-file.js";

const hash = (token: string) => createHash("sha256").update(token).digest("hex");

describe("the auth file", () => {
  const yaml = `
tokens:
  - name: writer
    sha256: ${hash("writer-token")}
    read: [shared]
    write: [team, ""]
    clear: true
  - name: admin
    sha256: ${hash("admin-token")}
    write: ["*"]
    clear: true
    stats: true
`;

  it("reads YAML and JSON alike, and finds a token's rights by its hash", () => {
    const json = JSON.stringify({ tokens: [{ name: "reader", sha256: hash("reader-token"), read: ["*"] }] });
    for (const [file, token, name] of [[yaml, "writer-token", "writer"], [json, "reader-token", "reader"]] as const) {
      const principal = TokenFile.parse(file, "test").authenticate(token);
      assert.equal(principal?.name, name);
    }
  });

  it("knows no token that is not listed, nor a listed token's hash passed as the token", () => {
    const tokens = TokenFile.parse(yaml, "test");
    assert.equal(tokens.authenticate("writer-token "), undefined);
    assert.equal(tokens.authenticate(hash("writer-token")), undefined);
    assert.equal(tokens.authenticate(""), undefined);
  });

  it("grants exactly the rights listed", () => {
    const tokens = TokenFile.parse(yaml, "test");
    const writer = tokens.authenticate("writer-token")!;
    assert.deepEqual(
      [writer.canRead("shared"), writer.canWrite("shared"), writer.canRead("team"), writer.canWrite(""), writer.canRead("other")],
      [true, false, true, true, false],
      "read lists, and write implies read",
    );
    assert.deepEqual([writer.canClear("team"), writer.canClear("shared"), writer.canClear(undefined), writer.canReadStats()], [true, false, false, false]);
    const admin = tokens.authenticate("admin-token")!;
    assert.deepEqual([admin.canRead("anything"), admin.canWrite("anything"), admin.canClear(undefined), admin.canReadStats()], [true, true, true, true]);
  });

  const problems: [string, string, RegExp][] = [
    ["not YAML", "tokens: [ {name: x", /^f is not YAML or JSON: /],
    ["no tokens", "tokens: []", /^f must have a non-empty list "tokens"$/],
    ["a token without a name", `tokens:\n  - sha256: ${hash("x")}`, /^f: tokens\[0\]\.name must be a non-empty string$/],
    ["a token in clear", "tokens:\n  - name: a\n    sha256: secret", /^f: tokens\[0\]\.sha256 must be 64 hex digits \(the SHA-256 of the token, see llmcache hash-token\)$/],
    ["a namespace list that is not a list", `tokens:\n  - name: a\n    sha256: ${hash("x")}\n    read: team`, /^f: tokens\[0\]\.read must be a list of namespaces/],
    ["a right that is not true or false", `tokens:\n  - name: a\n    sha256: ${hash("x")}\n    clear: yes please`, /^f: tokens\[0\]\.clear must be true or false$/],
    ["the same token twice", `tokens:\n  - {name: a, sha256: ${hash("x")}}\n  - {name: b, sha256: ${hash("x")}}`, /^f: tokens\[1\] has the same sha256 as an earlier token$/],
    // Logs and errors name tokens: two of one name could not be told apart.
    ["two tokens of one name", `tokens:\n  - {name: a, sha256: ${hash("x")}}\n  - {name: a, sha256: ${hash("y")}}`, /^f: tokens\[1\] has the same name as an earlier token, "a"$/],
    // Dropped unseen, the misspelt right left the token without it.
    ["a misspelt right", `tokens:\n  - name: a\n    sha256: ${hash("x")}\n    raed: ["*"]`, /^f: tokens\[0\] has "raed", not one of name, sha256, read, write, clear, stats$/],
  ];
  for (const [name, text, message] of problems) {
    it(`refuses ${name}, saying where`, () => {
      assert.throws(() => TokenFile.parse(text, "f"), (error: Error) => {
        assert.equal(error.name, "AuthFileError");
        assert.match(error.message, message);
        return true;
      });
    });
  }
});
