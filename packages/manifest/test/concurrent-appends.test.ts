import { type ChildProcess, execFile } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { openStore, parseCid } from '@dreamdb/cas'
import { freshBucket, minioEndpoint, nodeArgsFor, packageEntry } from '@dreamdb/cas-tests'
import { describe, expect, it } from 'vitest'
import { inspect, log, Repository } from '../src/index.js'
import { SCHEMA } from './helpers/records.js'

/**
 * Small enough for the suite (each process starts in about 0.2 s from the builds, 0.5-1.5 s
 * through tsx when a build is older than its sources), large enough
 * that commits race and retry and every writer pins twice while the others append. The
 * torture suite's concurrent-append scenario runs 8 processes x 25 appends (and SIGKILLs
 * writers in sigkill-append).
 */
const PROCESSES = 4
const APPENDS = 5
const worker = fileURLToPath(new URL('./append-worker.mjs', import.meta.url))
const manifestModule = packageEntry(fileURLToPath(new URL('..', import.meta.url)))
const casModule = packageEntry(fileURLToPath(new URL('../../cas', import.meta.url)))

interface WorkerResult {
  attempts: number[]
  pins: { name: string; manifest: string }[]
}

/**
 * Start a worker; it opens the store, says `ready` on stderr and waits for a line on stdin,
 * so that all of them append at once whatever their start-up takes.
 */
function startWorker(
  url: string,
  id: number,
): { ready: Promise<void>; go(): void; done: Promise<WorkerResult> } {
  let signalReady!: () => void
  const ready = new Promise<void>((resolve) => {
    signalReady = resolve
  })
  let child!: ChildProcess
  const done = new Promise<WorkerResult>((resolve, reject) => {
    child = execFile(
      process.execPath,
      [
        ...nodeArgsFor(manifestModule, casModule),
        worker,
        manifestModule,
        casModule,
        url,
        'corpus',
        String(APPENDS),
        String(id),
      ],
      { env: process.env, timeout: 60_000, maxBuffer: 1 << 24 },
      (error, stdout, stderr) =>
        error ? reject(new Error(`worker ${id}: ${error.message}\n${stderr}`)) : resolve(JSON.parse(stdout)),
    )
  })
  child.stderr!.on('data', (chunk: Buffer) => {
    if (chunk.toString().includes('ready')) signalReady()
  })
  // A worker that dies before it is ready fails `done`; let `ready` settle too.
  done.catch(() => signalReady())
  return { ready, go: () => child.stdin!.end('go\n'), done }
}

async function concurrentAppends(url: string, label: string): Promise<void> {
  const repo = new Repository(await openStore(url))
  await repo.createDataset('corpus', { schema: SCHEMA })
  const started = Date.now()
  const workers = Array.from({ length: PROCESSES }, (_, id) => startWorker(url, id))
  await Promise.all(workers.map((w) => w.ready))
  for (const w of workers) w.go()
  const results = await Promise.all(workers.map((w) => w.done))
  const attempts = results.flatMap((r) => r.attempts)
  console.log(
    `[${label}] ${PROCESSES} processes x ${APPENDS} appends in ${Date.now() - started} ms: ` +
      `attempts per commit mean ${(attempts.reduce((a, b) => a + b, 0) / attempts.length).toFixed(2)}, max ${Math.max(...attempts)}`,
  )
  expect(attempts.length).toBe(PROCESSES * APPENDS)

  // Every append is in the history and in the timeline.
  const history = await log(repo, 'corpus')
  expect(history.filter((e) => e.change.kind === 'append').length).toBe(PROCESSES * APPENDS)
  const state = await inspect(repo, 'corpus')
  expect(state.stats.buckets).toBe(PROCESSES * APPENDS)
  expect(state.stats.records).toBe(PROCESSES * APPENDS * 3)
  expect(state.buckets.length).toBe(PROCESSES * APPENDS)
  // Anchors are unique across all writers.
  const anchors = state.buckets.flatMap((b) =>
    b.anchors.ranges!.flatMap(([s, n]) => Array.from({ length: n }, (_, i) => BigInt(s) + BigInt(i))),
  )
  expect(new Set(anchors.map(String)).size).toBe(PROCESSES * APPENDS * 3)
  // Every object it references is present and verifies (get hashes every byte).
  for (const object of state.objects)
    await repo.store.get((await import('@dreamdb/cas')).parseCid(object.cid))
  // The bucket objects carry the tags of all the appends.
  const tags = new Set<string>()
  for await (const { bytes } of repo.store.getMany(
    state.buckets.map((b) => parseCid(b.objects.label!.cid)),
  )) {
    tags.add(JSON.parse(new TextDecoder().decode(bytes)).tag)
  }
  expect(tags.size).toBe(PROCESSES * APPENDS)

  // Snapshots and branches taken while appends ran still show exactly what they saw.
  const pins = results.flatMap((r) => r.pins)
  expect(pins.length).toBe(PROCESSES * Math.floor(APPENDS / 5) * 2)
  const today = state.buckets.map((b) => b.objects.label!.cid)
  for (const pin of pins) {
    const pinned = await repo.resolve(pin.name)
    expect(pinned.target.manifest.toString()).toBe(pin.manifest)
    const seen: string[] = []
    for await (const { bucket } of repo.buckets(pinned.manifest))
      seen.push(bucket.fields.label!.cid.toString())
    const atThatTime = history.find((e) => e.manifest === pin.manifest)!
    expect(seen.length).toBe(atThatTime.buckets)
    // Its buckets are a prefix of today's timeline: appends never disturbed them.
    expect(seen).toEqual(today.slice(0, seen.length))
  }
  await repo.store.close()
}

describe(`${PROCESSES} processes appending to one branch`, () => {
  it('on a folder: every append lands, nothing is lost, pins stay pinned', async () => {
    const root = await mkdtemp(join(tmpdir(), 'dreamdb-manifest-'))
    try {
      await concurrentAppends(root, 'fs')
    } finally {
      await rm(root, { recursive: true, force: true })
    }
  })

  const endpoint = minioEndpoint()
  it.runIf(endpoint !== undefined)(
    'on MinIO: every append lands, nothing is lost, pins stay pinned',
    async () => {
      await concurrentAppends(`${endpoint}/${await freshBucket(endpoint!)}`, 's3 (MinIO)')
    },
  )
})
