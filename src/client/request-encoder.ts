// The codecs moved to rpc/codec/; bench/transport-probe.ts, which another change is
// writing, still imports from here. Delete this file once it does not.
export { encodeLookupRequest } from "../rpc/codec/lookup.js";
