#!/usr/bin/env node
// The llmcache command. V8's heap is sized before anything else loads (see
// heap-sizing.ts): a static import of the commands would load every module
// of the server first.
import "./heap-sizing.js";

const { runCommandLine } = await import("./command-line.js");
await runCommandLine(process.argv.slice(2));
