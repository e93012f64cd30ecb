// Mocha reporter for the reliability suite: the spec reporter's output, then
// one line "N passed, N failed" and the figures the checks recorded.
const Mocha = require("mocha");

class SummaryReporter extends Mocha.reporters.Spec {
  constructor(runner, options) {
    super(runner, options);
    runner.once(Mocha.Runner.constants.EVENT_RUN_END, () => {
      const { passes, failures } = runner.stats;
      const figures = globalThis.llmcacheReliabilityFigures ?? new Map();
      process.stdout.write(`\n${passes} passed, ${failures} failed\n`);
      for (const [name, value] of figures) process.stdout.write(`  ${name}: ${value}\n`);
    });
  }
}

module.exports = SummaryReporter;
