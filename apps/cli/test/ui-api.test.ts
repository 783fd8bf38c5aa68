/**
 * The viewer's JSON API in process (node:http on a free loopback port), against the store
 * `prepareStore` builds: what each endpoint answers checked against the records it was made
 * from, and what the server refuses (non-loopback binds, hostile ref names, other hosts);
 * then `dreamdb ui --open` as a process, with an opener on its PATH and without one.
 */
import { once } from 'node:events'
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises'
import { request } from 'node:http'
import { join } from 'node:path'
import { inflateSync } from 'node:zlib'
import { cidOf, openStore, type Store } from '@dreamdb/cas'
import { Dataset } from '@dreamdb/dataset'
import { Repository } from '@dreamdb/manifest'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createApi } from '../src/ui/api.js'
import { inTimelineOrder } from '../src/ui/compare.js'
import { encodePng, webImage } from '../src/ui/images.js'
import { timelineAnchors } from '../src/ui/read.js'
import { startViewer, type Viewer } from '../src/ui/server.js'
import { cli, LABELS, prepareStore, record, SWEEP, spawnCli, tempDir } from './helpers.js'

let dir: Awaited<ReturnType<typeof tempDir>>
let store: Store
let viewer: Viewer
const stop = new AbortController()

beforeAll(async () => {
  dir = await tempDir()
  const { backend } = await prepareStore(dir.path)
  // A run whose records differ from the sweep's (one more appended): compared by anchor.
  const moved = await (await Dataset.openRef(SWEEP[0]!, { backend })).branch('moved')
  await moved.appendMany([record(500)])
  // A run with predictions for the first 60 records only (same timeline, a partial layer).
  const partial = await (await Dataset.openRef('prep-v1', { backend })).branch('partial')
  const firstAnchors: bigint[] = []
  for await (const batch of partial.iterArrowBatches({
    fields: ['label'],
    batchSize: 60,
    batchRange: [0, 1],
  })) {
    firstAnchors.push(...(batch.getChild('_anchor')!.toArray() as BigUint64Array))
  }
  await partial.addScalarLayer(
    'prediction',
    'embedding',
    'categorical',
    firstAnchors.map((a, i) => [a, LABELS[i % 4]!] as const),
  )
  await moved.repository.store.close()
  store = await openStore(backend)
  viewer = await startViewer({ repo: new Repository(store), store, port: 0, signal: stop.signal })
})

afterAll(async () => {
  stop.abort()
  await viewer?.close()
  await store?.close()
  await dir?.remove()
})

interface Got {
  status: number
  type: string
  etag: string | undefined
  body: Buffer
  // biome-ignore lint/suspicious/noExplicitAny: API documents, checked field by field below
  json: () => any
}

/** A GET (or other method) with an optional Host header, as raw as a browser would send it. */
function get(
  path: string,
  init: { method?: string; host?: string; ifNoneMatch?: string } = {},
): Promise<Got> {
  const url = new URL(viewer.url)
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: url.hostname,
        port: url.port,
        path,
        method: init.method ?? 'GET',
        headers: {
          ...(init.host ? { host: init.host } : {}),
          ...(init.ifNoneMatch ? { 'if-none-match': init.ifNoneMatch } : {}),
        },
      },
      (res) => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.on('end', () => {
          const body = Buffer.concat(chunks)
          resolve({
            status: res.statusCode ?? 0,
            type: String(res.headers['content-type']),
            etag: res.headers.etag,
            body,
            json: () => JSON.parse(body.toString('utf8')),
          })
        })
      },
    )
    req.on('error', reject)
    req.end()
  })
}

const api = async (path: string) => {
  const got = await get(path)
  expect(got.status, got.body.toString()).toBe(200)
  return got.json()
}

describe('dreamdb ui: the JSON API', { timeout: 15_000 }, () => {
  it('lists refs and draws the history DAG with parents and the refs at each state', async () => {
    const refs = await api('/api/refs')
    expect(refs.format).toBe('dreamdb.ui.refs/1')
    const names = refs.refs.map((r: { name: string }) => r.name)
    expect(names).toEqual(expect.arrayContaining(['corpus', 'prep-v1', 'prod-1', ...SWEEP]))
    const graph = await api('/api/graph')
    const byManifest = new Map(graph.nodes.map((n: { manifest: string }) => [n.manifest, n]))
    const corpus = refs.refs.find((r: { name: string }) => r.name === 'corpus')
    const head = byManifest.get(corpus.manifest) as {
      parents: string[]
      records: number
      refs: { name: string }[]
    }
    expect(head.records).toBe(150)
    expect(head.refs.map((r) => r.name)).toContain('corpus')
    for (const parent of head.parents) expect(byManifest.has(parent)).toBe(true)
    const commit = await api(`/api/commit?ref=${corpus.manifest}`)
    expect(commit.stats.records).toBe(150)
    expect(commit.objects.count).toBeGreaterThan(0)
  })

  it('pages records of any ref: the values are the records appended, images as URLs', async () => {
    const page = await api('/api/records?ref=corpus&offset=95&limit=10')
    expect(page.total).toBe(150)
    expect(page.next).toBe(105)
    expect(page.records.map((r: { position: number }) => r.position)).toEqual(
      Array.from({ length: 10 }, (_, i) => 95 + i),
    )
    for (const r of page.records) {
      const want = record(r.position)
      expect(r.values.label).toBe(want.label)
      expect(r.values.split).toBe(want.split)
      expect(r.values.image.bytes).toBe(want.image.byteLength)
      expect(r.values.embedding.head).toEqual(want.embedding)
      const image = await get(r.values.image.url)
      expect(image.status).toBe(200)
      expect(new Uint8Array(image.body)).toEqual(want.image)
      // Its ETag is the stored bytes' CID: a browser revalidating gets 304 and no bytes.
      expect(image.etag).toBe(`"${cidOf(want.image)}"`)
      const again = await get(r.values.image.url, { ifNoneMatch: image.etag! })
      expect([again.status, again.body.length]).toEqual([304, 0])
    }
    // Not an image format a browser draws: served as bytes, never sniffed, never inlined.
    expect((await get(page.records[0].values.image.url)).type).toBe('application/octet-stream')
    expect(page.records[0].values.image.inline).toBeUndefined()
  })

  it('reads a page of images by ranged reads, never a fragment whole, and decodes a bucket once', async () => {
    const whole: string[] = []
    const ranged: string[] = []
    const counting = new Proxy(store, {
      get(target, key) {
        if (key === 'get')
          return (cid: { toString(): string }, o?: object) => {
            whole.push(cid.toString())
            return target.get(cid as never, o)
          }
        if (key === 'getRange')
          return (cid: { toString(): string }, o: never) => {
            ranged.push(cid.toString())
            return target.getRange(cid as never, o)
          }
        const value = Reflect.get(target, key)
        return typeof value === 'function' ? value.bind(target) : value
      },
    })
    const handlers = createApi({ repo: new Repository(counting), store: counting })
    const signal = new AbortController().signal
    const page = async (offset: number) =>
      (await handlers.get('records')!(
        new URLSearchParams(`ref=corpus&offset=${offset}&limit=10`),
        signal,
      )) as {
        json: { records: { position: number; values: { label: string } }[] }
      }
    const first = await page(95)
    expect(first.json.records.map((r) => r.values.label)).toEqual(
      Array.from({ length: 10 }, (_, i) => record(95 + i).label),
    )
    const ds = await Dataset.openRef('corpus', { backend: store })
    const fragments = new Set<string>()
    for await (const { bucket } of ds.repository.buckets(ds.manifest))
      for (const [key, object] of Object.entries(bucket.fields))
        if (key === 'image' || key.startsWith('image/fragment-')) fragments.add(object.cid.toString())
    expect(whole.filter((c) => fragments.has(c))).toEqual([])
    expect(ranged.length).toBe(2) // one run in each of the two buckets the page spans
    // The next page of the same bucket: only its images' bytes are read.
    const before = whole.length
    await page(105)
    expect(whole.slice(before).filter((c) => !c.startsWith('bafyrei'))).toEqual([])
  })

  it('filters by scalar fields and layers with a cursor, without reading past a page', async () => {
    const want = Array.from({ length: 150 }, (_, i) => i).filter(
      (i) => record(i).label === 'dog' && record(i).split === 'train',
    )
    const first = await api(
      '/api/records?ref=corpus&filter=label%3Ddog,split%3Dtrain&limit=7&fields=label,split',
    )
    expect(first.records.map((r: { position: number }) => r.position)).toEqual(want.slice(0, 7))
    expect(first.next).toBe(want[6]! + 1)
    const second = await api(
      `/api/records?ref=corpus&filter=label%3Ddog,split%3Dtrain&limit=7&from=${first.next}`,
    )
    expect(second.records.map((r: { position: number }) => r.position)).toEqual(want.slice(7, 14))
    // Wrong predictions of a sweep run: prediction differs from label.
    const wrong = await api(`/api/records?ref=${SWEEP[1]}&differ=prediction,label&limit=500`)
    expect(wrong.records.map((r: { position: number }) => r.position)).toEqual(
      Array.from({ length: 120 }, (_, i) => i).filter((i) => i % 3 === 0),
    )
    expect(wrong.next).toBeNull()
    const bad = await get('/api/records?ref=corpus&filter=image%3Dx')
    expect(bad.status).toBe(400)
    expect(bad.json().error.code).toBe('ERR_CLI_WRONG_FIELD_KIND')
  })

  it('shows one record with every field and layer; finds it by anchor too', async () => {
    const one = await api(`/api/record?ref=${SWEEP[0]}&position=7`)
    expect(one.record.values.embedding).toEqual(record(7).embedding)
    expect(one.record.values.prediction).toBe(LABELS[7 % 4])
    expect(one.fields.find((f: { name: string }) => f.name === 'prediction').layer).toBe(true)
    const again = await api(`/api/record?ref=${SWEEP[0]}&anchor=${one.record.anchor}`)
    expect(again.record.position).toBe(7)
    const none = await get('/api/record?ref=corpus&position=150')
    expect(none.status).toBe(404)
    expect(none.json().error.code).toBe('ERR_CLI_UI_NO_SUCH_RECORD')
  })

  it('compares a sweep: the matrix, accuracy per run, and the records two runs disagree on', async () => {
    const cmp = await api('/api/compare?prefix=sweep/&field=prediction')
    expect(cmp.refs).toEqual(SWEEP)
    expect(cmp.label).toBe('label')
    // Run k predicts 'wrong' for every (k+2)th record of 120.
    SWEEP.forEach((_, k) => {
      const wrong = Array.from({ length: 120 }, (_, i) => i).filter((i) => i % (k + 2) === 0).length
      expect(cmp.accuracy[k]).toBeCloseTo(1 - wrong / 120, 10)
    })
    const differ = Array.from({ length: 120 }, (_, i) => i).filter((i) => (i % 2 === 0) !== (i % 3 === 0))
    expect(cmp.agreement[0][1]).toBeCloseTo(1 - differ.length / 120, 10)
    const page = await api(
      `/api/disagreements?refs=${SWEEP[0]},${SWEEP[1]}&context=${SWEEP.join(',')}&limit=5`,
    )
    expect(page.total).toBe(differ.length)
    expect(page.records.map((r: { position: number }) => r.position)).toEqual(differ.slice(0, 5))
    for (const r of page.records) {
      expect(r.a).not.toBe(r.b)
      expect(r.label).toBe(LABELS[r.position % 4])
      expect(r.values.image.url).toMatch(/^\/api\/image\?/)
    }
    // Refs of different records are joined by anchor: the appended record has no prediction.
    const joined = await api(`/api/compare?refs=${SWEEP[0]},moved,${SWEEP[1]}`)
    expect(joined.records).toBe(120)
    expect(joined.counts).toEqual([120, 120, 120])
    expect(joined.agreement[0][1]).toBe(1)
    expect(joined.agreement[1][2]).toBeCloseTo(cmp.agreement[0][1], 10)
    expect(joined.accuracy[1]).toBeCloseTo(cmp.accuracy[0], 10)
    const apart = await api(
      `/api/disagreements?refs=moved,${SWEEP[1]}&context=${SWEEP[0]},moved,${SWEEP[1]}&limit=5`,
    )
    expect(apart.records.map((r: { position: number }) => r.position)).toEqual(differ.slice(0, 5))
    // A layer over some records of the timeline: joined by the iterator, absent values skipped.
    const some = await api(`/api/compare?refs=${SWEEP[0]},partial`)
    expect(some.counts).toEqual([120, 60])
    expect(some.overlap[0][1]).toBe(60)
    expect(some.agreement[0][1]).toBe(0.5)
    expect(some.accuracy).toEqual([cmp.accuracy[0], 1])
    // A run against the label (the matrix's diagonal).
    const self = await api(`/api/disagreements?refs=${SWEEP[2]}&limit=500`)
    expect(self.total).toBe(30)
  })

  it('inspects a tag (splits, history) and diffs two states (records appended)', async () => {
    const tag = await api('/api/inspect?ref=prod-1')
    expect(tag.ref).toEqual({ name: 'prod-1', kind: 'snapshot' })
    expect(tag.splits).toEqual({ train: 90, validation: 30 })
    expect(tag.history[0].summary).toMatch(/^layer 'prediction'/)
    const d = await api('/api/diff?a=prep-v1&b=corpus')
    expect(d.records).toEqual({ added: 30, removed: 0 })
    expect(d.appended).toMatchObject({ ref: 'corpus', offset: 120, count: 30 })
    const added = await api('/api/records?ref=corpus&offset=120&limit=30&fields=label')
    const runs = d.appended.anchors.runs as [string, number][]
    expect(
      runs.flatMap(([start, n]) => Array.from({ length: n }, (_, k) => String(BigInt(start) + BigInt(k)))),
    ).toEqual(added.records.map((r: { anchor: string }) => r.anchor))
    const layered = await api(`/api/diff?a=prep-v1&b=${SWEEP[0]}`)
    expect(layered.layers.added).toEqual(['prediction'])
    expect(layered.layerValues).toEqual({ prediction: { from: 0, to: 120 } })
    expect(d.same).toBe(false)
  })

  it('finds the nearest records of a record through search', async () => {
    const near = await api('/api/similar?ref=corpus&position=10&k=3')
    expect(near.hits[0].position).toBe(10)
    expect(near.hits[0].distance).toBeCloseTo(0, 5)
    expect(near.hits).toHaveLength(3)
  })

  it('refuses hostile ref names, other hosts, writes and unknown routes with error documents', async () => {
    for (const ref of ['../../etc/passwd', '..', '_dreamdb/anchors', 'a/../b', '%2e%2e/x', 'x\\y', '/abs']) {
      const got = await get(`/api/records?ref=${encodeURIComponent(ref)}`)
      expect(got.status, ref).toBe(400)
      expect(got.json()).toMatchObject({
        format: 'dreamdb.error/1',
        error: { code: 'ERR_MANIFEST_INVALID_REF_NAME' },
      })
    }
    expect((await get('/api/compare?prefix=../')).json().error.code).toBe('ERR_MANIFEST_INVALID_REF_NAME')
    const missing = await get('/api/records?ref=nope')
    expect(missing.status).toBe(404)
    expect(missing.json().error).toMatchObject({ code: 'ERR_MANIFEST_REF_NOT_FOUND', exitCode: 3 })
    const rebinding = await get('/api/refs', { host: 'evil.example:80' })
    expect(rebinding.status).toBe(403)
    expect(rebinding.json().error.code).toBe('ERR_CLI_UI_NOT_LOOPBACK')
    expect((await get('/api/refs', { method: 'POST' })).status).toBe(400)
    const unknown = await get('/../../etc/passwd')
    expect(unknown.status).toBe(404)
    expect(unknown.json().error.code).toBe('ERR_CLI_UI_NOT_FOUND')
    // Paths that a URL parser reads as a host ('//x') or as nothing ('//') are paths here.
    for (const path of ['//', '//evil.example/api/refs', '*']) {
      const got = await get(path)
      expect(got.status, path).toBe(404)
      expect(got.json().error.code, path).toBe('ERR_CLI_UI_NOT_FOUND')
    }
    expect((await get('/')).type).toMatch(/^text\/html/)
  })

  it('stops a handler when its request is aborted (the client went away)', async () => {
    const handlers = createApi({ repo: new Repository(store), store })
    const gone = AbortSignal.abort(new DOMException('the client went away', 'AbortError'))
    for (const [name, query] of [
      ['records', 'ref=corpus&filter=label%3Dcat'],
      ['compare', 'prefix=sweep/'],
      ['inspect', 'ref=prod-1'],
    ] as const) {
      await expect(handlers.get(name)!(new URLSearchParams(query), gone), name).rejects.toMatchObject({
        name: 'AbortError',
      })
    }
  })

  it('refuses to bind a non-loopback address unless asked', async () => {
    await expect(
      startViewer({ repo: new Repository(store), store, host: '0.0.0.0', port: 0, signal: stop.signal }),
    ).rejects.toMatchObject({ code: 'ERR_CLI_UI_NOT_LOOPBACK' })
    const usage = await cli(['ui', '--port', '70000'], { cwd: dir.path })
    expect(usage.code).toBe(2)
    expect(usage.stderr).toMatch(/--port must be 0 to 65535/)
  })
})

describe('dreamdb ui: anchors without BigInts', () => {
  it('lists the anchors of a state from its buckets and checks layer anchors against them word by word', async () => {
    const ds = await Dataset.openRef('corpus', { backend: store })
    const read: bigint[] = []
    for await (const batch of ds.iterArrowBatches({ fields: ['label'], batchSize: 1000 })) {
      read.push(...(batch.getChild('_anchor')!.toArray() as BigUint64Array))
    }
    const listed = await timelineAnchors(ds, new AbortController().signal)
    expect([...listed]).toEqual(read)
    // Layer anchors against the timeline's ranges, across the 2^32 boundary (where the high
    // word changes) and across segments that cut the ranges elsewhere.
    const ranges = [
      [2n ** 32n - 2n, 3],
      [7n, 2],
    ] as const
    const whole = BigUint64Array.from([2n ** 32n - 2n, 2n ** 32n - 1n, 2n ** 32n, 7n, 8n])
    expect(inTimelineOrder([whole], ranges)).toBe(true)
    expect(inTimelineOrder([whole.slice(0, 1), whole.slice(1, 4), whole.slice(4)], ranges)).toBe(true)
    expect(inTimelineOrder([whole.slice(0, 4)], ranges)).toBe(false)
    expect(inTimelineOrder([whole, BigUint64Array.of(9n)], ranges)).toBe(false)
    expect(
      inTimelineOrder([BigUint64Array.from([2n ** 32n - 2n, 2n ** 32n - 1n, 2n ** 33n, 7n, 8n])], ranges),
    ).toBe(false)
    expect(
      inTimelineOrder([BigUint64Array.from([2n ** 32n - 2n, 2n ** 32n - 1n, 2n ** 32n, 8n, 7n])], ranges),
    ).toBe(false)
  })
})

describe('dreamdb ui: images for the browser', () => {
  it('serves netpbm as PNG and known formats as they are', () => {
    const pgm = new Uint8Array([...new TextEncoder().encode('P5\n# c\n3 2\n255\n'), 1, 2, 3, 4, 5, 6])
    const png = webImage(pgm)
    expect(png.type).toBe('image/png')
    // IDAT holds one filter byte then the pixels, per row.
    const idat = Buffer.from(png.bytes).indexOf('IDAT')
    const length = Buffer.from(png.bytes).readUInt32BE(idat - 4)
    expect([...inflateSync(png.bytes.subarray(idat + 4, idat + 4 + length))]).toEqual([
      0, 1, 2, 3, 0, 4, 5, 6,
    ])
    expect(webImage(png.bytes).type).toBe('image/png')
    expect(webImage(encodePng(1, 1, 3, new Uint8Array(3))).bytes[25]).toBe(2)
    // Rows past one stored deflate block (65 535 bytes) still inflate to the pixels, checksum included.
    const pixels = Uint8Array.from({ length: 300 * 300 }, (_, i) => (i * 7) & 255)
    const big = Buffer.from(encodePng(300, 300, 1, pixels))
    const at = big.indexOf('IDAT')
    const rows = inflateSync(big.subarray(at + 4, at + 4 + big.readUInt32BE(at - 4)))
    expect(rows.length).toBe(301 * 300)
    expect(rows.subarray(301 * 299 + 1).equals(pixels.subarray(300 * 299))).toBe(true)
    expect(webImage(Uint8Array.of(0xff, 0xd8, 0xff, 0xe0)).type).toBe('image/jpeg')
    expect(webImage(new TextEncoder().encode('<svg onload=alert(1)>')).type).toBe('application/octet-stream')
  })
})

describe('dreamdb ui --open', () => {
  /** `dreamdb ui --open --json` with `PATH` as given; its URL once it serves, and its stderr so far. */
  async function openUi(path: string, env: Record<string, string> = {}) {
    const child = spawnCli(['ui', '--port', '0', '--open', '--json'], {
      cwd: dir.path,
      env: { PATH: path, ...env },
    })
    let stdout = ''
    let stderr = ''
    child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d))
    child.stdout.setEncoding('utf8')
    // The JSON document (indented over several lines) is written once the viewer serves.
    let url: string | undefined
    const deadline = AbortSignal.timeout(30_000)
    try {
      while (url === undefined) {
        const [chunk] = (await Promise.race([
          once(child.stdout, 'data', { signal: deadline }),
          once(child, 'exit', { signal: deadline }),
        ])) as [string]
        if (child.exitCode !== null) throw new Error(`dreamdb ui exited: ${stderr}`)
        stdout += chunk
        try {
          url = (JSON.parse(stdout) as { url: string }).url
        } catch {}
      }
    } catch (error) {
      // No viewer left behind by a failed start.
      child.kill('SIGKILL')
      throw error
    }
    const stop = async () => {
      child.kill('SIGINT')
      if (child.exitCode === null) await once(child, 'exit')
      return { code: child.exitCode, stderr }
    }
    return { url, stderr: () => stderr, stop }
  }

  async function eventually<T>(check: () => Promise<T | undefined>): Promise<T> {
    for (let i = 0; i < 200; i++) {
      const value = await check()
      if (value !== undefined) return value
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    throw new Error('timed out')
  }

  it("hands the viewer's URL to the platform's opener and serves on", async () => {
    const bin = join(dir.path, 'opener-bin')
    await mkdir(bin, { recursive: true })
    // xdg-open (Linux's opener) as a user's desktop would run it: here it notes what it was given.
    await writeFile(
      join(bin, 'xdg-open'),
      '#!/bin/sh\nprintf "%s|" "$@" > "$OPENED.part" && mv "$OPENED.part" "$OPENED"\n',
    )
    await chmod(join(bin, 'xdg-open'), 0o755)
    const opened = join(dir.path, 'opened')
    const ui = await openUi(`${bin}:${process.env.PATH}`, { OPENED: opened })
    try {
      const args = await eventually(() => readFile(opened, 'utf8').catch(() => undefined))
      expect(args).toBe(`${ui.url}|`)
      expect(ui.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/)
      const page = await fetch(ui.url)
      expect(page.status).toBe(200)
      expect(await page.text()).toContain('<html')
    } finally {
      const { code, stderr } = await ui.stop()
      expect(code).toBe(0)
      expect(stderr).not.toMatch(/could not open a browser/)
    }
  })

  it('says so when there is no opener, and serves on', async () => {
    const empty = join(dir.path, 'empty-bin')
    await mkdir(empty, { recursive: true })
    const ui = await openUi(empty)
    try {
      const warning = await eventually(async () =>
        /could not open a browser/.test(ui.stderr()) ? ui.stderr() : undefined,
      )
      expect(warning).toContain('xdg-open')
      expect(warning).toContain(`open ${ui.url} yourself`)
      expect((await fetch(ui.url)).status).toBe(200)
    } finally {
      expect((await ui.stop()).code).toBe(0)
    }
  })
})
