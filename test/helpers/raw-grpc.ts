import { connect } from "node:http2";
import { status } from "@grpc/grpc-js";

export interface RawReply {
  /** grpc-status from the trailers (or the headers, for a trailers-only reply). */
  status: number;
  /** grpc-message, percent-decoded. */
  message: string;
  /** The response body: length-prefixed messages. */
  body: Buffer;
}

/** A gRPC length-prefixed frame: a compression flag, a 4-byte big-endian length, then the payload. */
export function grpcFrame(payload: Uint8Array, declaredLength = payload.length): Buffer {
  const frame = Buffer.alloc(5 + payload.length);
  frame.writeUInt32BE(declaredLength, 1);
  frame.set(payload, 5);
  return frame;
}

/**
 * One gRPC call written by hand over HTTP/2, so that tests can send what no
 * well-behaved client would.
 */
export function rawCall(address: string, path: string, body: Uint8Array): Promise<RawReply> {
  return new Promise((resolve, reject) => {
    const session = connect(`http://${address}`);
    session.on("error", reject);
    const stream = session.request({
      ":method": "POST",
      ":path": path,
      "content-type": "application/grpc",
      te: "trailers",
    });
    let fields: Record<string, unknown> = {};
    const chunks: Buffer[] = [];
    stream.on("response", (headers) => (fields = { ...headers }));
    stream.on("trailers", (trailers) => (fields = { ...fields, ...trailers }));
    stream.on("data", (chunk: Buffer) => chunks.push(chunk));
    stream.on("error", reject);
    stream.on("end", () => {
      session.close();
      resolve({
        status: Number(fields["grpc-status"]),
        message: decodeURIComponent(String(fields["grpc-message"] ?? "")),
        body: Buffer.concat(chunks),
      });
    });
    stream.end(body);
  });
}

const HEALTH = ["UNKNOWN", "SERVING", "NOT_SERVING"];

/** grpc.health.v1.Health/Check for one service name ("" for the server as a whole). */
export async function healthOf(address: string, service: string): Promise<string> {
  const name = Buffer.from(service);
  const reply = await rawCall(address, "/grpc.health.v1.Health/Check", grpcFrame(Buffer.from([0x0a, name.length, ...name])));
  if (reply.status !== status.OK) return `status ${reply.status}: ${reply.message}`;
  const response = reply.body.subarray(5); // after the frame's header: field 1, the status, left out when 0
  return HEALTH[response[1] ?? 0] ?? `health ${response[1]}`;
}
