import { killLeftoverServers } from "./server-process.js";

// Loaded by mocha (see .mocharc.json) for every run.
export const mochaHooks = {
  afterAll(): void {
    killLeftoverServers();
  },
};
