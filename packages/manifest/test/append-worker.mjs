/**
 * One of the processes of the concurrent-append test, plain JavaScript so that it starts
 * without tsx when the modules are builds (`packageEntry` of @dreamdb/cas-tests):
 *   node [--import tsx] append-worker.mjs <manifest module> <cas module> <store url> <branch> <appends> <worker id>
 * Says `ready` on stderr and waits for a line on stdin, then appends <appends> small
 * batches to <branch>, taking a snapshot and a branch after every fifth append, and prints
 * what it did as JSON.
 */
import { pathToFileURL } from 'node:url'

const [manifestModule, casModule, url, branch, appends, worker] = process.argv.slice(2)
if (!manifestModule || !casModule || !url || !branch || !appends || !worker)
  throw new Error('usage: append-worker <manifest module> <cas module> <url> <branch> <appends> <worker>')
/** @type {typeof import('../src/index.js')} */
const { Repository } = await import(pathToFileURL(manifestModule).href)
/** @type {typeof import('@dreamdb/cas')} */
const { openStore } = await import(pathToFileURL(casModule).href)

/**
 * Append `count` records to `ref` as test/helpers/records.ts does (the tests' helper, which
 * a plain-JavaScript process cannot import): mint anchors, write one JSON object per field
 * of its SCHEMA, commit a bucket that references them.
 * @param {import('../src/index.js').Repository} repo
 * @param {string} ref
 * @param {number} count
 * @param {string} tag
 */
async function appendRecords(repo, ref, count, tag) {
  const start = await repo.mintAnchors(count)
  const anchors = Array.from({ length: count }, (_, i) => (start + BigInt(i)).toString())
  /** @type {Record<string, { cid: import('multiformats/cid').CID; bytes: number }>} */
  const fields = {}
  for (const name of ['image', 'label']) {
    const bytes = new TextEncoder().encode(JSON.stringify({ field: name, tag, anchors }))
    fields[name] = { cid: await repo.store.put(bytes), bytes: bytes.byteLength }
  }
  return await repo.commit(ref, {
    kind: 'append',
    buckets: [{ records: count, anchorRanges: [{ start, count }], fields }],
  })
}

const repo = new Repository(await openStore(url))
// Ready; the test starts every worker's appends at once (a line on stdin).
process.stderr.write('ready\n')
await new Promise((resolve) => process.stdin.once('data', resolve))
process.stdin.destroy()
/** @type {number[]} */
const attempts = []
/** @type {{ name: string; manifest: string }[]} */
const pins = []
for (let i = 0; i < Number(appends); i++) {
  const result = await appendRecords(repo, branch, 3, `w${worker}-${i}`)
  attempts.push(result.attempts)
  if (i % 5 === 4) {
    const snap = await repo.snapshot(`pins/w${worker}-snap-${i}`, branch)
    const fork = await repo.branch(`pins/w${worker}-branch-${i}`, branch)
    pins.push(
      { name: snap.label, manifest: snap.manifest },
      { name: fork.name, manifest: fork.manifest.toString() },
    )
  }
}
await repo.store.close()
process.stdout.write(JSON.stringify({ attempts, pins }))
