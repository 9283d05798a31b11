/**
 * Preloaded (`node --expose-gc --import`) into the server process the `deliver` bench spawns; the
 * server's own code is untouched. On SIGUSR2: a full garbage collection, then one line on stdout,
 * `bench-memory {…process.memoryUsage()}`, so the bench can tell live memory from garbage.
 */
process.on("SIGUSR2", () => {
  const gc = (globalThis as { gc?: () => void }).gc
  gc?.()
  gc?.()
  process.stdout.write(`bench-memory ${JSON.stringify({ gc: gc !== undefined, ...process.memoryUsage() })}\n`)
})

export {}
