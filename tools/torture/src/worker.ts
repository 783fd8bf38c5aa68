/**
 * A writer process of the torture suite (started by `lib.ts` `startWorker`, often killed):
 *
 *   worker append <url> <dataset> <writer> <count> <log>   append <count> one-record commits
 *   worker cas    <url> <ref>     <writer> <count> <log>   <count> compare-and-swap increments
 *   worker merge  <url> <dataset> <writer> <count> <log>   <count> merges of <dataset>-side into <dataset>
 *
 * After each commit the writer appends `committed <id>` to <log> and fsyncs it before it
 * does anything else, then prints the same line: a line in the log is an acknowledged
 * write, whatever happens to the process next. A failure prints `error <code> <message>`
 * (`UNTYPED` when the error has no DreamDB code) and the writer goes on with its next
 * write; an operation that has not settled after TORTURE_OP_DEADLINE_MS prints `hang` and
 * the process exits 3.
 */
import { closeSync, fsyncSync, openSync, readlinkSync, writeSync } from 'node:fs'
import { openStore, type Store } from '@dreamdb/cas'
import { Dataset } from '@dreamdb/dataset'

const [mode, url, name, writer, countText, logPath] = process.argv.slice(2)
if (!mode || !url || !name || !writer || !countText || !logPath) {
  throw new Error('usage: worker append|cas|merge <url> <dataset|ref> <writer> <count> <log>')
}
const count = Number(countText)
const deadlineMs = Number(process.env.TORTURE_OP_DEADLINE_MS ?? 120_000)
const pauseMs = Number(process.env.TORTURE_PAUSE_MS ?? 0)
const log = openSync(logPath, 'a')

function acknowledge(id: string): void {
  writeSync(log, `committed ${id}\n`)
  fsyncSync(log)
  process.stdout.write(`committed ${id}\n`)
}

function report(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code
  const typed = typeof code === 'string' && code.startsWith('ERR_') ? code : undefined
  const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error)
  process.stdout.write(`error ${typed ?? 'UNTYPED'} ${message.replaceAll('\n', ' ').slice(0, 400)}\n`)
  return typed
}

async function guarded<T>(what: string, work: () => Promise<T>): Promise<T> {
  const timer = setTimeout(() => {
    process.stdout.write(`hang ${what} past ${deadlineMs} ms\n`)
    process.exit(3)
  }, deadlineMs)
  try {
    return await work()
  } finally {
    clearTimeout(timer)
  }
}

/** `ready pid=<pid> pidns=<namespace>`: who this writer is, as a lock owner sees it. */
function ready(): void {
  let pidns = 'unknown'
  try {
    pidns = readlinkSync('/proc/self/ns/pid')
  } catch {}
  process.stdout.write(`ready pid=${process.pid} pidns=${pidns}\n`)
}

const encoder = new TextEncoder()
const decoder = new TextDecoder()

interface Counter {
  total: number
  by: Record<string, number>
}

async function increment(store: Store, ref: string, mine: number): Promise<void> {
  for (;;) {
    const current = await store.readRef(ref)
    if (current === undefined) throw new Error(`the counter ${ref} is missing`)
    const value = JSON.parse(decoder.decode(current.value)) as Counter
    const next: Counter = { total: value.total + 1, by: { ...value.by, [writer!]: mine } }
    try {
      await store.updateRef(ref, encoder.encode(JSON.stringify(next)), current.version)
      return
    } catch (error) {
      const code = (error as { code?: string }).code
      if (code === 'ERR_CAS_REF_CONFLICT') continue
      if (code === 'ERR_CAS_OUTCOME_UNKNOWN') {
        // Find out, as a commit does: is our own value there?
        report(error)
        const after = await store.readRef(ref)
        const seen = after && (JSON.parse(decoder.decode(after.value)) as Counter)
        if (seen && (seen.by[writer!] ?? 0) >= mine) return
        continue
      }
      throw error
    }
  }
}

if (mode === 'cas') {
  const store = await guarded('open', () => openStore(url))
  ready()
  for (let i = 1; i <= count; i++) {
    // A failed increment is tried again only once the counter shows it did not land, so
    // this writer never counts twice (its own entry is absolute: `by[writer] = i`).
    let done = false
    for (let attempt = 0; attempt < 5 && !done; attempt++) {
      try {
        await guarded(`increment ${i}`, () => increment(store, name, i))
        done = true
      } catch (error) {
        report(error)
        const seen = await guarded(`check ${i}`, () => store.readRef(name)).catch(() => undefined)
        if (seen && ((JSON.parse(decoder.decode(seen.value)) as Counter).by[writer] ?? 0) >= i) done = true
      }
    }
    // The counter of this writer must stay in order: stop at an increment that keeps failing.
    if (!done) break
    acknowledge(`${writer} ${i}`)
    if (pauseMs > 0) await new Promise((r) => setTimeout(r, pauseMs))
  }
  await store.close()
} else if (mode === 'append') {
  const ds = await guarded('open', () => Dataset.openRef(name, { backend: url }))
  ready()
  for (let i = 0; i < count; i++) {
    const id = `${writer}-${i}`
    try {
      await guarded(`append ${id}`, () => ds.appendMany([{ id, n: i }], { message: id }))
      acknowledge(id)
    } catch (error) {
      report(error)
    }
    if (pauseMs > 0) await new Promise((r) => setTimeout(r, pauseMs))
  }
  await ds.repository.store.close()
} else if (mode === 'merge') {
  // Each merge from a fresh read of the branch; one that lands is acknowledged by the
  // manifest it made (nothing to merge: no line). Refusals are typed and the next one runs.
  ready()
  for (let i = 0; i < count; i++) {
    try {
      const ds = await guarded('open', () => Dataset.openRef(name, { backend: url }))
      const before = ds.currentManifest()
      const after = await guarded(`merge ${i}`, () => ds.merge(`${name}-side`))
      if (after !== before) acknowledge(`merge ${writer}-${i} ${after}`)
      await ds.repository.store.close()
    } catch (error) {
      report(error)
    }
    if (pauseMs > 0) await new Promise((r) => setTimeout(r, pauseMs))
  }
} else {
  throw new Error(`unknown mode ${mode}`)
}
closeSync(log)
process.stdout.write('done\n')
