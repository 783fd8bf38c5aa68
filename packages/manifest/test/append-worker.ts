/**
 * One of the processes of the concurrent-append test:
 *   node --import tsx append-worker.ts <store url> <branch> <appends> <worker id>
 * Says `ready` on stderr and waits for a line on stdin, then appends <appends> small
 * batches to <branch>, taking a snapshot and a branch after every fifth append, and prints
 * what it did as JSON.
 */
import { openStore } from '@dreamdb/cas'
import { Repository } from '../src/index.js'
import { appendRecords } from './helpers/records.js'

const [url, branch, appends, worker] = process.argv.slice(2)
if (!url || !branch || !appends || !worker)
  throw new Error('usage: append-worker <url> <branch> <appends> <worker>')
const repo = new Repository(await openStore(url))
// Ready; the test starts every worker's appends at once (a line on stdin).
process.stderr.write('ready\n')
await new Promise((resolve) => process.stdin.once('data', resolve))
process.stdin.destroy()
const attempts: number[] = []
const pins: { name: string; manifest: string }[] = []
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
