/**
 * The failover tests on a 3-node JetStream cluster (issue 13): SIGKILLs of stream leaders whose
 * outcome depends on how fast the cluster elects new leaders, which varies too much on a loaded
 * 2-core machine for `npm test` (design note bl). Run with `npm run test:cluster`.
 */
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/cluster/**/*.test.ts"],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    maxWorkers: 1,
    reporters: ["default", "./test/support/summary-reporter.ts"],
  },
});
