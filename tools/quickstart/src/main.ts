/**
 * The quickstart: what DreamDB's storage layer promises, shown on the embedded default
 * backend (a folder). Until the dataset layer lands this is a store demo: objects that
 * dedup and verify themselves, and refs that move only by compare-and-swap.
 *
 *   DREAMDB_BACKEND=http://127.0.0.1:9000/bucket pnpm quickstart   # or any backend URL
 */
import { randomBytes } from 'node:crypto'
import { openStore } from '@dreamdb/cas'

const backend = process.env.DREAMDB_BACKEND ?? process.argv[2] ?? './.dreamdb'
const encode = (text: string): Uint8Array => new TextEncoder().encode(text)
const decode = (bytes: Uint8Array): string => new TextDecoder().decode(bytes)
const step = (n: number, text: string): void => console.log(`\n${n}. ${text}`)

const store = await openStore(backend, { cwd: process.env.INIT_CWD ?? process.cwd() })
console.log(`DreamDB store at ${store.url}`)

step(1, 'Put three records and one 8 MiB image-like blob (content-addressed, sha2-256)')
let written = 0
let deduplicated = 0
const onProgress = (event: { type: string; stored?: boolean }): void => {
  if (event.type !== 'dreamdb:cas:put') return
  if (event.stored) written++
  else deduplicated++
}
const records = ['cat,0.91', 'dog,0.88', 'cat,0.91']
const recordCids = []
for await (const cid of store.putMany(records.map(encode), { onProgress })) recordCids.push(cid)
const blob = randomBytes(8 << 20)
const blobCid = await store.put(blob, { onProgress })
for (const [i, cid] of recordCids.entries()) console.log(`   record ${i} -> ${cid}`)
console.log(`   blob     -> ${blobCid}`)
console.log(`   ${written} objects written, ${deduplicated} deduplicated (record 2 repeats record 0)`)

step(2, 'Read back: every byte is hashed and compared with its CID')
const back = await store.get(blobCid)
console.log(`   ${back.byteLength} bytes verified; a 16-byte ranged read at 4 MiB:`)
const range = await store.getRange(blobCid, { offset: 4 << 20, length: 16 })
console.log(`   ${Buffer.from(range).toString('hex')}`)

step(3, 'Point a branch at the data: one tiny compare-and-swap write')
const refName = `branches/quickstart-${Date.now()}`
const head = await store.createRef(refName, encode(recordCids.map(String).join('\n')))
console.log(`   ${refName} created at generation ${head.generation} (version ${head.version.slice(0, 16)}…)`)
const moved = await store.updateRef(refName, encode(blobCid.toString()), head.version)
console.log(`   moved to generation ${moved.generation}`)

step(4, 'A writer holding a stale version loses the race instead of overwriting')
try {
  await store.updateRef(refName, encode('lost update'), head.version)
  throw new Error('a stale compare-and-swap succeeded: this must never happen')
} catch (error) {
  const { code, message } = error as { code?: string; message: string }
  if (code !== 'ERR_CAS_REF_CONFLICT') throw error
  console.log(`   ${code}: ${message}`)
}
console.log(`   ${refName} still names ${decode((await store.readRef(refName))!.value).slice(0, 24)}…`)

step(5, 'Refs in this store')
for await (const name of store.listRefs('branches/')) console.log(`   ${name}`)
await store.close()
console.log('\nDone. Run ./tools/test.sh for the full test suite (it starts a real MinIO).')
