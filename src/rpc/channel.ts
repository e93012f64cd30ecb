import { Client, credentials } from "@grpc/grpc-js";

/**
 * How to reach a server. Plain data, so that the worker thread behind the
 * blocking methods can open its own channel from the same settings.
 */
export interface ChannelSettings {
  /** host:port, e.g. "127.0.0.1:50051" or "[::1]:50051". */
  address: string;
}

export function openChannel(settings: ChannelSettings): Client {
  return new Client(settings.address, credentials.createInsecure());
}
