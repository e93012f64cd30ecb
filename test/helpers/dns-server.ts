import { createSocket, type RemoteInfo, type Socket } from "node:dgram";

const TYPE_A = 1;
const CLASS_IN = 1;
const NAME_ERROR = 3;

export interface DnsServer {
  /** The UDP port it answers on, at 127.0.0.1. */
  port: number;
  /** How many queries for an A record of a known name it has answered. */
  readonly answered: number;
  close(): Promise<void>;
}

/**
 * A DNS server on 127.0.0.1 for a test's own names: a query for an A record
 * of a name in `records` is answered with every IPv4 address listed for it;
 * other types of a known name get an empty answer, and unknown names
 * NXDOMAIN. It speaks RFC 1035 over UDP, enough for the resolvers of Node
 * (c-ares) and of grpcio.
 */
export async function startDnsServer(records: Record<string, readonly string[]>): Promise<DnsServer> {
  const known = new Map(Object.entries(records).map(([name, addresses]) => [name.toLowerCase(), addresses]));
  const socket: Socket = createSocket("udp4");
  let answered = 0;
  socket.on("message", (query: Buffer, peer: RemoteInfo) => {
    const question = parseQuestion(query);
    if (!question) return; // not a query we can read: no answer, as a server would drop it
    const addresses = known.get(question.name.toLowerCase());
    const answers = addresses && question.type === TYPE_A && question.class === CLASS_IN ? addresses : [];
    if (answers.length > 0) answered++;
    socket.send(reply(query, question.end, answers, addresses === undefined ? NAME_ERROR : 0), peer.port, peer.address);
  });
  await new Promise<void>((resolve) => socket.bind(0, "127.0.0.1", resolve));
  return {
    port: socket.address().port,
    get answered() {
      return answered;
    },
    close: () => new Promise<void>((resolve) => socket.close(() => resolve())),
  };
}

interface Question {
  name: string;
  type: number;
  class: number;
  /** Where the question section ends in the query. */
  end: number;
}

function parseQuestion(query: Buffer): Question | undefined {
  if (query.length < 12 || query.readUInt16BE(4) !== 1) return undefined;
  const labels: string[] = [];
  let at = 12;
  while (at < query.length && query[at] !== 0) {
    const length = query[at]!;
    if (length > 63 || at + 1 + length > query.length) return undefined;
    labels.push(query.toString("latin1", at + 1, at + 1 + length));
    at += 1 + length;
  }
  if (at + 5 > query.length) return undefined;
  return { name: labels.join("."), type: query.readUInt16BE(at + 1), class: query.readUInt16BE(at + 3), end: at + 5 };
}

/** The query's header and question, flagged as an answer, then an A record per address (the name by pointer to the question's). */
function reply(query: Buffer, questionEnd: number, addresses: readonly string[], rcode: number): Buffer {
  const header = Buffer.from(query.subarray(0, questionEnd));
  // QR (a response), the query's opcode and RD, RA; the response code.
  header[2] = 0x80 | (query[2]! & 0x79);
  header[3] = 0x80 | rcode;
  header.writeUInt16BE(addresses.length, 6); // ANCOUNT
  header.writeUInt16BE(0, 8); // NSCOUNT
  header.writeUInt16BE(0, 10); // ARCOUNT
  const answers = addresses.map((address) => {
    const record = Buffer.alloc(16);
    record.writeUInt16BE(0xc00c, 0); // the name: a pointer to the question's, at offset 12
    record.writeUInt16BE(TYPE_A, 2);
    record.writeUInt16BE(CLASS_IN, 4);
    record.writeUInt32BE(1, 6); // TTL: one second, so that resolvers ask again soon
    record.writeUInt16BE(4, 10);
    address.split(".").forEach((part, i) => (record[12 + i] = Number(part)));
    return record;
  });
  return Buffer.concat([header, ...answers]);
}
