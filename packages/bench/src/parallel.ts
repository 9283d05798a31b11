/** `f(0) … f(count - 1)`, at most `concurrency` at a time, results in order (no dependencies: child scripts use it too). */
export const inParallel = async <A>(count: number, concurrency: number, f: (i: number) => Promise<A>) => {
  const results: Array<A> = new Array(count)
  let next = 0
  const worker = async () => {
    while (next < count) {
      const i = next++
      results[i] = await f(i)
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker))
  return results
}
