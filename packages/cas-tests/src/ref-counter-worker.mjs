/**
 * One of the processes in the multi-process compare-and-swap test, plain JavaScript so that
 * it starts without tsx when the store module is a build (`packageEntry`):
 *   node [--import tsx] ref-counter-worker.mjs <module exporting openStore> <url> <ref> <increments> [wait]
 * With `wait`, once its store is open it says `ready` on stderr and waits for a line on
 * stdin. It increments the decimal counter in <ref> <increments> times, retrying lost races, and
 * prints how many conflicts it retried.
 */
import { pathToFileURL } from 'node:url'

const [modulePath, url, ref, count, wait] = process.argv.slice(2)
if (!modulePath || !url || !ref || !count)
  throw new Error('usage: ref-counter-worker <module> <url> <ref> <n> [wait]')
/** @type {{ openStore: (url: string) => Promise<import('@dreamdb/cas').Store> }} */
const { openStore } = await import(pathToFileURL(modulePath).href)
const store = await openStore(url)
if (wait === 'wait') {
  // Ready; the test starts every worker's increments at once (a line on stdin).
  process.stderr.write('ready\n')
  await new Promise((resolve) => process.stdin.once('data', resolve))
  process.stdin.destroy()
}
let conflicts = 0
for (let i = 0; i < Number(count); i++) {
  for (;;) {
    const current = await store.readRef(ref)
    if (current === undefined) throw new Error(`ref ${ref} is missing`)
    const next = Number(new TextDecoder().decode(current.value)) + 1
    try {
      await store.updateRef(ref, new TextEncoder().encode(String(next)), current.version)
      break
    } catch (error) {
      if (/** @type {{ code?: string }} */ (error).code !== 'ERR_CAS_REF_CONFLICT') throw error
      conflicts++
    }
  }
}
await store.close()
process.stdout.write(JSON.stringify({ conflicts }))
