/**
 * GC under writers (design/0008), the long form of the dataset suite's bounded loop: rounds
 * in which two appenders, a layer writer (half its sweep branches deleted again), an aborter
 * (appends aborted at random, retried once their objects are older than the grace period,
 * through a store that delays the commit so GC passes run between the dedup hit and the ref
 * move) and a collector with a short grace all run at once on one store. After each round
 * fsck must find nothing missing or corrupt, and every acknowledged append and kept layer
 * must read back. An append slower than the bound design/0008 asks of a commit (grace -
 * freshen age) is outside GC's guarantee: its records are counted apart, not judged.
 */
import { openStore, type Store } from '@dreamdb/cas'
import { Dataset } from '@dreamdb/dataset'
import { collectGarbage, fsck } from '@dreamdb/manifest'
import { ErrorLog, type Result, sleep, type Target, zero } from '../lib.js'

export interface GcUnderWritersOptions {
  rounds: number
  roundMs: number
  /** The collector's grace period. */
  graceMs: number
  /** Dedup hits on objects older than this freshen them (DREAMDB_TEST_FRESHEN_AFTER_MS, S3). */
  freshenMs: number
  /** How long a retry's first commit attempt waits before moving the ref. */
  retryDelayMs: number
  random: () => number
}

const SCHEMA = {
  fields: [
    { name: 'image', family: 'binary' as const, media: 'image' as const },
    { name: 'embedding', family: 'embedding' as const, dim: 8 },
    { name: 'label', family: 'scalar' as const, kind: 'categorical' as const },
  ],
}

/** Record `id`: its id is the embedding's first component; the image bytes depend on it too. */
function record(id: number) {
  const embedding = Array.from({ length: 8 }, (_, d) => (d === 0 ? id : Math.sin(id * (d + 1))))
  return { image: new TextEncoder().encode(`image-${id}`), embedding, label: `class-${id % 5}` }
}

/** Every record id a ref iterates (verified reads of the images too). */
async function idsOf(store: Store, ref: string): Promise<number[]> {
  const ds = await Dataset.openRef(ref, { backend: store })
  const ids: number[] = []
  for await (const batch of ds.iterArrowBatches({ fields: ['embedding', 'image'], batchSize: 500 })) {
    const column = batch.getChild('embedding')!
    for (let i = 0; i < batch.numRows; i++) ids.push((column.get(i) as { get(k: number): number }).get(0))
  }
  return ids
}

export async function gcUnderWriters(target: Target, options: GcUnderWritersOptions): Promise<Result> {
  const started = Date.now()
  const counts = zero()
  const errors = new ErrorLog(counts)
  const notes: string[] = []
  const { rounds, roundMs, graceMs, freshenMs, retryDelayMs, random } = options
  const previous = process.env.DREAMDB_TEST_FRESHEN_AFTER_MS
  process.env.DREAMDB_TEST_FRESHEN_AFTER_MS = String(freshenMs)
  const store = await openStore(target.url)
  try {
    const ds = await Dataset.create('corpus', { backend: store, schema: SCHEMA })
    await ds.appendMany(
      Array.from({ length: 20 }, (_, i) => record(i)),
      { bucketRecords: 20 },
    )
    const anchors: bigint[] = []
    for await (const batch of ds.iterArrowBatches({ fields: ['label'], batchSize: 1000 }))
      anchors.push(...(batch.getChild('_anchor')!.toArray() as BigUint64Array))
    const acked = new Set<number>(Array.from({ length: 20 }, (_, i) => i))
    // Aborted appends and their retries go to a branch of their own, so their commits do not
    // starve behind the appenders'.
    await ds.branch('retries')
    const ackedRetries = new Set<number>(Array.from({ length: 20 }, (_, i) => i))
    const layers = new Map<string, number>()
    let nextId = 100
    let layerRun = 0
    let deleted = 0
    let keptFresh = 0
    let gcRuns = 0
    let aborted = 0
    let retried = 0
    let slowest = 0
    let beyondBound = 0
    const bound = graceMs - freshenMs
    const acknowledge = (into: Set<number>, ids: number[], t0: number): void => {
      const took = Date.now() - t0
      slowest = Math.max(slowest, took)
      if (took >= bound) {
        beyondBound++
        return
      }
      for (const id of ids) into.add(id)
    }
    const toRetry: { ids: number[]; at: number }[] = []
    for (let round = 0; round < rounds; round++) {
      const until = Date.now() + roundMs
      const running = () => Date.now() < until
      /** Run `step` until the round ends; a step that fails is counted and the loop goes on. */
      const loop = async (who: string, step: () => Promise<void>) => {
        while (running()) {
          try {
            await step()
          } catch (error) {
            errors.add(error, `${who}: `)
          }
        }
      }
      const appender = async (who: string) => {
        const mine = await Dataset.openRef('corpus', { backend: store })
        await loop(who, async () => {
          const ids = [nextId++, nextId++, nextId++]
          const t0 = Date.now()
          await mine.appendMany(ids.map(record), { bucketRecords: 20 })
          acknowledge(acked, ids, t0)
        })
      }
      const layerer = () =>
        loop('layers', async () => {
          const name = `sweep/run-${layerRun++}`
          const branch = await ds.branch(name)
          await branch.addScalarLayer(
            'prediction',
            'embedding',
            'int',
            anchors.map((a, k) => [a, layerRun * 100 + k]),
          )
          if (layerRun % 2 === 0) await ds.repository.deleteBranch(name)
          else layers.set(name, layerRun)
        })
      const aborter = async () => {
        const mine = await Dataset.openRef('retries', { backend: store })
        let delayed = 0
        const slowStore = new Proxy(store, {
          get(target, key) {
            const value = Reflect.get(target, key, target)
            if (key === 'updateRef')
              return async (name: string, ...rest: unknown[]) => {
                if (!name.startsWith('_') && Date.now() - delayed > 6 * retryDelayMs) {
                  delayed = Date.now()
                  await sleep(retryDelayMs)
                }
                return (value as (...a: unknown[]) => unknown).call(target, name, ...rest)
              }
            return typeof value === 'function' ? value.bind(target) : value
          },
        })
        const slow = await Dataset.openRef('retries', { backend: slowStore })
        await loop('aborter', async () => {
          const due = toRetry[0]
          if (due !== undefined && Date.now() - due.at > graceMs + 500) {
            toRetry.shift()
            const t0 = Date.now()
            await slow.appendMany(due.ids.map(record), { bucketRecords: 20 })
            acknowledge(ackedRetries, due.ids, t0)
            retried++
            return
          }
          const ids = [nextId++, nextId++]
          const controller = new AbortController()
          setTimeout(() => controller.abort(), random() * 30)
          try {
            const t0 = Date.now()
            await mine.appendMany(ids.map(record), { bucketRecords: 20, signal: controller.signal })
            acknowledge(ackedRetries, ids, t0)
          } catch (error) {
            if (!controller.signal.aborted) throw error
            aborted++
            toRetry.push({ ids, at: Date.now() })
          }
        })
      }
      const collector = () =>
        loop('gc', async () => {
          const report = await collectGarbage(store, { graceMs, unsafeAllowShortGrace: true, apply: true })
          deleted += report.deleted.objects
          keptFresh += report.keptFresh
          gcRuns++
        })
      await Promise.all([appender('appender 1'), appender('appender 2'), layerer(), aborter(), collector()])

      const report = await fsck(store)
      const damaged = report.missing.length + report.corrupt.length
      if (damaged > 0) {
        counts.lost += damaged
        notes.push(
          `LOST after round ${round}: ${report.missing.length} objects missing, ${report.corrupt.length} corrupt (first: ${JSON.stringify(report.missing[0] ?? report.corrupt[0])})`,
        )
      }
      const ids = await idsOf(store, 'corpus')
      const seen = new Set(ids)
      counts.duplicated += ids.length - seen.size
      const lostIds = [...acked].filter((id) => !seen.has(id))
      const retriedIds = new Set(await idsOf(store, 'retries'))
      lostIds.push(...[...ackedRetries].filter((id) => !retriedIds.has(id)))
      if (lostIds.length > 0) {
        counts.lost += lostIds.length
        notes.push(`LOST after round ${round}: records ${lostIds.slice(0, 5).join(', ')}`)
      }
      for (const [name, run] of layers) {
        const branch = await Dataset.openRef(name, { backend: store })
        const values: number[] = []
        for await (const batch of branch.iterArrowBatches({ fields: ['prediction'], batchSize: 100 }))
          values.push(
            ...Array.from(batch.getChild('prediction')!.toArray() as ArrayLike<number | bigint>, Number),
          )
        if (values.sort((a, b) => a - b)[0] !== run * 100) {
          counts.lost++
          notes.push(`LOST after round ${round}: layer ${name} reads ${values[0]}, not ${run * 100}`)
        }
      }
    }
    counts.acknowledged = acked.size + ackedRetries.size + layers.size
    notes.unshift(
      `${rounds} rounds of ${roundMs} ms, grace ${graceMs} ms, freshen after ${freshenMs} ms: ${gcRuns} GC runs, ${deleted} objects deleted, ${keptFresh} kept as freshened`,
      `${acked.size + ackedRetries.size} records acknowledged, ${aborted} appends aborted, ${retried} retried, ${layers.size} layers kept; slowest append ${slowest} ms (${beyondBound} beyond the ${bound} ms bound, not judged)`,
    )
    if (retried === 0) notes.push('no aborted append was retried: the round was too short to reach the grace')
    if (deleted === 0) notes.push('GC deleted nothing: no garbage was old enough')
  } finally {
    await store.close()
    if (previous === undefined) delete process.env.DREAMDB_TEST_FRESHEN_AFTER_MS
    else process.env.DREAMDB_TEST_FRESHEN_AFTER_MS = previous
  }
  notes.push(...errors.notes())
  return {
    scenario: 'gc-under-writers',
    backend: target.backend,
    counts,
    seconds: (Date.now() - started) / 1000,
    notes,
  }
}
