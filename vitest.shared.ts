import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    globalSetup: [new URL("./test-support/globalSetup.ts", import.meta.url).pathname],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    fileParallelism: true,
    pool: "forks"
  }
})
