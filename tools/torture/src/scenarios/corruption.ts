/**
 * Corruption injection: a small dataset (appends, a layer on a branch, a snapshot), then,
 * case by case, one stored object or ref damaged behind the store's back (a flipped byte, a
 * truncation, an empty file, junk appended) and every reader run on every ref: open and
 * iterate, log, inspect, the ref listing, and for some cases the CLI's `refs`, `log`,
 * `inspect` and `head`. Each must succeed or fail with a typed error, within its deadline.
 * Then the damage is repaired: an object by putting the same bytes again (healing: the put
 * must replace the damaged copy, and a verified read must then succeed), a ref by restoring
 * its file. `acknowledged` counts the heals tried, `lost` the ones that did not heal.
 */

import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3'
import { openStore, type Store } from '@dreamdb/cas'
import { Dataset } from '@dreamdb/dataset'
import { inspect, log, Repository } from '@dreamdb/manifest'
import { adminS3, ErrorLog, exitWithin, judged, type Result, startCli, type Target, zero } from '../lib.js'
import { APPEND_SCHEMA } from './writers.js'

type CID = Awaited<ReturnType<Store['put']>>
type Mutation = 'flip' | 'truncate' | 'empty' | 'append'
const MUTATIONS: Mutation[] = ['flip', 'flip', 'flip', 'truncate', 'empty', 'append']

function mutate(bytes: Uint8Array, how: Mutation, random: () => number): Uint8Array {
  const out = Uint8Array.from(bytes)
  if (how === 'flip' && out.length > 0) {
    const at = Math.floor(random() * out.length)
    out[at]! ^= 1 << Math.floor(random() * 8)
    return out
  }
  if (how === 'truncate') return out.subarray(0, Math.floor(random() * out.length))
  if (how === 'empty') return new Uint8Array(0)
  return Uint8Array.from([...out, ...new TextEncoder().encode('\u0000junk')])
}

/** Raw access to a stored key (`objects/sha2-256/..` or `refs/<name>.ref`), beside the store. */
function rawAccess(target: Target) {
  if (target.folder !== undefined) {
    const folder = target.folder
    return {
      read: async (key: string) => new Uint8Array(await readFile(join(folder, key))),
      write: (key: string, bytes: Uint8Array) => writeFile(join(folder, key), bytes),
      close: () => {},
    }
  }
  const { endpoint, bucket } = target.s3!
  const client = adminS3(endpoint)
  return {
    read: async (key: string) => {
      const answer = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }))
      return await answer.Body!.transformToByteArray()
    },
    write: async (key: string, bytes: Uint8Array) => {
      await client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: bytes }))
    },
    close: () => client.destroy(),
  }
}

const hex = (cid: CID) => Buffer.from(cid.multihash.digest).toString('hex')
const objectKey = (cid: CID) => `objects/sha2-256/${hex(cid).slice(0, 2)}/${hex(cid)}`

async function build(url: string): Promise<void> {
  const ds = await Dataset.create('torture', { backend: url, schema: APPEND_SCHEMA })
  for (let c = 0; c < 3; c++) {
    await ds.appendMany(
      Array.from({ length: 5 }, (_, i) => ({ id: `c${c}-${i}`, n: c * 10 + i })),
      { bucketRecords: 2, message: `commit ${c}` },
    )
  }
  await ds.snapshot('torture-snap')
  const anchors: bigint[] = []
  for await (const batch of ds.iterArrowBatches({ fields: ['n'] })) {
    for (let i = 0; i < batch.numRows; i++) anchors.push(batch.getChild('_anchor')!.get(i) as bigint)
  }
  const run = await ds.branch('torture-run')
  await run.addScalarLayer(
    'guess',
    'n',
    'int',
    anchors.map((a, i) => [a, i % 3] as const),
  )
  await ds.repository.store.close()
}

export interface CorruptionOptions {
  cases: number
  random: () => number
}

export async function corruption(
  target: Target,
  _logDir: string,
  options: CorruptionOptions,
): Promise<Result> {
  const started = Date.now()
  const counts = zero()
  const errors = new ErrorLog(counts)
  await build(target.url)
  const store: Store = await openStore(target.url)
  const raw = rawAccess(target)
  const objects: CID[] = []
  for await (const o of store.list()) objects.push(o.cid)
  const refs: string[] = []
  for await (const name of store.listRefs('')) refs.push(name)
  const userRefs = refs.filter((r) => !r.startsWith('_'))
  const cliCases = Math.max(2, Math.round(options.cases / 12))
  let healed = 0
  let refCases = 0
  let cliRuns = 0
  const notes: string[] = []
  const op = (what: string, work: () => Promise<unknown>) => judged(errors, what, 30_000, work)
  try {
    for (let k = 0; k < options.cases; k++) {
      const onRef = options.random() < 0.25
      const how = MUTATIONS[Math.floor(options.random() * MUTATIONS.length)]!
      const cid = objects[Math.floor(options.random() * objects.length)]!
      const ref = refs[Math.floor(options.random() * refs.length)]!
      const key = onRef ? `refs/${ref}.ref` : objectKey(cid)
      const original = await raw.read(key)
      await raw.write(key, mutate(original, how, options.random))
      const label = `${how} ${onRef ? `ref ${ref}` : `object ${cid}`}`
      // Readers: a fresh store each case, so nothing is served from a cache.
      const fresh = await openStore(target.url)
      const reader = new Repository(fresh)
      try {
        await op(`${label}: listRefs`, async () => {
          for await (const _ of reader.listRefs('')) {
          }
        })
        for (const name of userRefs) {
          await op(`${label}: iterate ${name}`, async () => {
            const ds = await Dataset.openRef(name, { backend: fresh })
            for await (const _ of ds.iterArrowBatches({ batchSize: 4 })) {
            }
          })
          await op(`${label}: log ${name}`, () => log(reader, name))
          await op(`${label}: inspect ${name}`, () => inspect(reader, name))
        }
      } finally {
        await fresh.close()
      }
      if (k < cliCases) {
        for (const args of [['refs'], ['log', 'torture'], ['inspect', 'torture-run'], ['head', 'torture']]) {
          const cli = startCli([...args, '--backend', target.url])
          cliRuns++
          const end = await exitWithin(cli, 60_000, counts)
          if (end.hung || end.code === 0) continue
          const code = /dreamdb: (ERR_[A-Z0-9_]+)/.exec(cli.stderr)?.[1]
          errors.addCode(
            end.code === 70 ? undefined : code,
            `${label}: dreamdb ${args.join(' ')} exit ${end.code}: ${cli.stderr.slice(-300)}`,
          )
        }
      }
      // Repair: an object heals by putting the same bytes again; a ref file is restored.
      if (onRef) {
        refCases++
        await raw.write(key, original)
      } else {
        counts.acknowledged++
        const ok = await op(`${label}: heal`, async () => {
          await store.put(original, { codec: cid.code })
          const check = await openStore(target.url)
          try {
            await check.get(cid)
          } finally {
            await check.close()
          }
        })
        if (ok) healed++
        else {
          counts.lost++
          notes.push(`NOT HEALED: ${label}`)
          await raw.write(key, original)
        }
      }
    }
    // After every repair the whole dataset reads back as built.
    await op('final read', async () => {
      for (const name of userRefs) {
        const ds = await Dataset.openRef(name, { backend: store })
        let n = 0
        for await (const batch of ds.iterArrowBatches({})) n += batch.numRows
        if (n !== 15) throw new Error(`${name} reads ${n} records after the repairs, not 15`)
      }
    })
  } finally {
    raw.close()
    await store.close()
  }
  notes.unshift(
    `${options.cases} cases on ${objects.length} objects and ${refs.length} refs (${refCases} on refs), ${cliRuns} CLI runs; ${healed} of ${counts.acknowledged} damaged objects healed by a put`,
  )
  notes.push(...errors.notes())
  return {
    scenario: 'corruption',
    backend: target.backend,
    counts,
    seconds: (Date.now() - started) / 1000,
    notes,
  }
}
