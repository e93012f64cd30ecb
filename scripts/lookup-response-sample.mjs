// Writes one LookupResponse to stdout, encoded by protobuf-es from the
// generated TypeScript, for scripts/check-java.sh to read from Java.
import { create, toBinary } from "@bufbuild/protobuf";
import { LookupResponseSchema } from "../dist/gen/llmcache/v1/cache_pb.js";

const response = create(LookupResponseSchema, {
  hit: true,
  generations: [
    {
      text: "Paris",
      generationInfo: { finish_reason: "stop" },
      message: { type: "ai", content: { case: "text", value: "Paris" }, toolCalls: [{ name: "weather", args: { days: 3 }, id: "call-1" }] },
    },
  ],
});
process.stdout.write(toBinary(LookupResponseSchema, response));
