/**
 * The viewer (`dreamdb ui`, issue 17) in headless Chromium on a 1-million-record dataset in a
 * folder: time to first paint of the records grid and of the sweep comparison view (4 runs),
 * and per page of 100 images, against a plain static server handing the same 100 images to
 * the same browser from a folder (the baseline), alternated round by round.
 *
 * `pnpm bench ui [--records N] [--rounds R]` (default 1 000 000 records, 5 rounds). Needs a
 * Chromium (Debian's /usr/bin/chromium, or CHROMIUM_PATH).
 */
/// <reference lib="dom" />
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { openStore } from '@dreamdb/cas'
import { Dataset } from '@dreamdb/dataset'
import { Repository } from '@dreamdb/manifest'
import puppeteer, { type Page } from 'puppeteer-core'
import { startViewer } from '../apps/cli/src/ui/server.js'
import { describeMachine, machineInfo, markdownTable, median, writeResults } from './_harness.js'

const arg = (name: string, fallback: number) => {
  const at = process.argv.indexOf(`--${name}`)
  return at < 0 ? fallback : Number(process.argv[at + 1])
}
const RECORDS = arg('records', 1_000_000)
const ROUNDS = arg('rounds', 5)
const BUCKET = 4096
const SIDE = 16
const RUNS = ['sweep/a', 'sweep/b', 'sweep/c', 'sweep/d']
const PAGE = 100

/** A 16x16 grey PGM whose pattern depends on i (distinct images, ~270 bytes each). */
function pgm(i: number): Uint8Array {
  const header = new TextEncoder().encode(`P5\n${SIDE} ${SIDE}\n255\n`)
  const out = new Uint8Array(header.length + SIDE * SIDE)
  out.set(header)
  for (let p = 0; p < SIDE * SIDE; p++) out[header.length + p] = ((p * (1 + (i % 13)) + i) * 37) & 255
  return out
}

const load = () =>
  loadavg()
    .map((x) => x.toFixed(1))
    .join(' ')

const root = await mkdtemp(join(tmpdir(), 'dreamdb-bench-ui-'))
const backend = join(root, 'store')
const t0 = performance.now()
const ds = await Dataset.create('big', {
  backend,
  schema: {
    fields: [
      { name: 'image', family: 'binary', media: 'image' },
      { name: 'label', family: 'scalar', kind: 'categorical' },
      { name: 'split', family: 'scalar', kind: 'categorical' },
      { name: 'embedding', family: 'embedding', dim: 8 },
    ],
  },
})
for (let start = 0; start < RECORDS; start += 65_536) {
  const n = Math.min(65_536, RECORDS - start)
  await ds.appendMany(
    Array.from({ length: n }, (_, k) => {
      const i = start + k
      return {
        image: pgm(i),
        label: String(i % 10),
        split: i % 10 === 9 ? 'validation' : 'train',
        embedding: Array.from({ length: 8 }, (_, d) => Math.sin(i * (d + 1) * 0.001) + (i % 10) * 0.1),
      }
    }),
    { bucketRecords: BUCKET },
  )
}
const anchors: bigint[] = []
const labels: string[] = []
for await (const batch of ds.iterArrowBatches({ fields: ['label'], batchSize: 65_536 })) {
  const a = batch.getChild('_anchor')!
  const l = batch.getChild('label')!
  for (let i = 0; i < batch.numRows; i++) {
    anchors.push(a.get(i) as bigint)
    labels.push(String(l.get(i)))
  }
}
for (const [k, name] of RUNS.entries()) {
  const run = await ds.branch(name)
  // Run k is wrong on a different share of records: (k + 2) in 20.
  await run.addScalarLayer(
    'prediction',
    'image',
    'categorical',
    anchors.map(
      (anchor, i) => [anchor, (i * 7 + k) % 20 < k + 2 ? String((i + k + 1) % 10) : labels[i]!] as const,
    ),
  )
}
const buildSeconds = (performance.now() - t0) / 1000
console.log(
  `built ${RECORDS} records + ${RUNS.length} prediction layers in ${buildSeconds.toFixed(1)} s (load ${load()})`,
)

// The baseline: the same 100 images (as the PNGs the viewer sends) from a folder, by a
// plain static server, in a page of 100 <img>.
const folder = join(root, 'folder')
await mkdir(folder)
const store = await openStore(backend)
const viewer = await startViewer({
  repo: new Repository(store),
  store,
  port: 0,
  signal: new AbortController().signal,
})
const { webImage } = await import('../apps/cli/src/ui/images.js')
for (let i = 0; i < PAGE; i++) await writeFile(join(folder, `${i}.png`), webImage(pgm(i)).bytes)
const staticServer = createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://x')
  if (url.pathname === '/') {
    res.writeHead(200, { 'content-type': 'text/html' })
    res.end(
      `<!doctype html><body>${Array.from({ length: PAGE }, (_, i) => `<img src="/${i}.png?r=${url.searchParams.get('r')}" width=132 height=132>`).join('')}</body>`,
    )
    return
  }
  const name = url.pathname.slice(1)
  if (!/^\d+\.png$/.test(name)) return void res.writeHead(404).end()
  import('node:fs/promises').then(async ({ readFile }) => {
    res.writeHead(200, { 'content-type': 'image/png' })
    res.end(await readFile(join(folder, name)))
  })
})
await new Promise<void>((r) => staticServer.listen(0, '127.0.0.1', () => r()))
const staticUrl = `http://127.0.0.1:${(staticServer.address() as AddressInfo).port}/`

const executablePath = [process.env.CHROMIUM_PATH, '/usr/bin/chromium', '/usr/bin/chromium-browser'].find(
  (p) => p && existsSync(p),
)
if (!executablePath) throw new Error('no Chromium: apt-get install chromium, or set CHROMIUM_PATH')
const browser = await puppeteer.launch({
  executablePath,
  headless: true,
  args: ['--no-sandbox', '--disable-gpu'],
})
const page = await browser.newPage()
await page.setViewport({ width: 1280, height: 800 })
await page.setCacheEnabled(false)

const imagesDone = (p: Page, selector: string) =>
  p.waitForFunction(
    (s) => [...document.querySelectorAll(s)].every((i) => (i as HTMLImageElement).complete),
    { timeout: 120_000 },
    selector,
  )

/** Milliseconds from loading `hash` in a fresh page until the view is drawn and its images decoded. */
async function firstPaint(hash: string, view: string, images: string): Promise<number> {
  await page.goto('about:blank')
  const start = performance.now()
  await page.goto(new URL(hash, viewer.url).href)
  await page.waitForFunction(
    (v) => document.body.dataset.state === `ready:${v}` || document.body.dataset.state === 'error',
    { timeout: 300_000 },
    view,
  )
  if ((await page.evaluate(() => document.body.dataset.state)) === 'error') {
    throw new Error(await page.$eval('[data-testid=error]', (e) => e.textContent ?? ''))
  }
  await imagesDone(page, images)
  return performance.now() - start
}

/** A page of 100 records in the viewer, at an offset no earlier round read. */
const viewerPage = (offset: number) =>
  firstPaint(`#/records?ref=big&limit=${PAGE}&offset=${offset}`, 'records', '[data-testid=grid] img')

async function staticPage(round: number): Promise<number> {
  await page.goto('about:blank')
  const start = performance.now()
  await page.goto(`${staticUrl}?r=${round}`)
  await imagesDone(page, 'img')
  return performance.now() - start
}

const middle = Math.floor(RECORDS / 2)
const results: Record<string, { cold: number; warm: number[]; load: string }> = {}
// Cold: the first request after the server started (the dataset opened, nothing cached).
const gridCold = await firstPaint(`#/records?ref=big&offset=${middle}`, 'records', '[data-testid=grid] img')
const gridLoad = load()
const compareCold = await firstPaint('#/compare?prefix=sweep/', 'compare', 'img')
const compareLoad = load()
const gridWarm: number[] = []
const compareWarm: number[] = []
for (let r = 0; r < ROUNDS; r++) {
  gridWarm.push(
    await firstPaint(
      `#/records?ref=big&offset=${(middle + (r + 1) * 4801) % RECORDS}`,
      'records',
      '[data-testid=grid] img',
    ),
  )
  compareWarm.push(await firstPaint('#/compare?prefix=sweep/', 'compare', 'img'))
}
console.log(`grid cold ${gridCold} warm ${gridWarm}; compare cold ${compareCold} warm ${compareWarm}`)
results.grid = { cold: gridCold, warm: gridWarm, load: gridLoad }
results.compare = { cold: compareCold, warm: compareWarm, load: compareLoad }
// Disagreement page after a click: 24 records of a pair with images.
const clicks: number[] = []
for (let r = 0; r < ROUNDS; r++) {
  await firstPaint('#/compare?prefix=sweep/', 'compare', 'img')
  const start = performance.now()
  await page.click(`[data-testid=cell][data-i="${r % 4}"][data-j="${(r + 1) % 4}"]`)
  await page.waitForFunction(() => document.body.dataset.state === 'ready:disagreements', {
    timeout: 120_000,
  })
  await imagesDone(page, '[data-testid=disagreement] img')
  clicks.push(performance.now() - start)
}
// The other views, each opened once cold (nothing of it cached yet) and then ROUNDS times.
const others: { what: string; cold: number; warm: number[]; load: string }[] = []
for (const [what, hash, view, images] of [
  ['refs and the manifest DAG', '#/refs', 'refs', 'img'],
  [
    `records filtered label=3, 48 of them from offset ${middle.toLocaleString('en')}`,
    `#/records?ref=big&filter=label%3D3&from=${middle}`,
    'records',
    '[data-testid=grid] img',
  ],
  [
    `a record (position ${middle.toLocaleString('en')}) with every field`,
    `#/record?ref=big&position=${middle}`,
    'record',
    'img',
  ],
  [
    'inspect (splits counted over every record) and a diff of two runs',
    '#/inspect?ref=big&a=sweep/a&b=sweep/b',
    'inspect',
    'img',
  ],
  [
    `24 nearest records (exact scan of ${RECORDS.toLocaleString('en')} 8-d vectors)`,
    `#/similar?ref=big&position=${middle}`,
    'similar',
    '[data-testid=grid] img',
  ],
] as const) {
  const cold = await firstPaint(hash, view, images)
  const warm: number[] = []
  for (let r = 0; r < ROUNDS; r++) warm.push(await firstPaint(hash, view, images))
  others.push({ what, cold, warm, load: load() })
  console.log(what, Math.round(cold), warm.map(Math.round))
}
const pages: number[] = []
const baseline: number[] = []
for (let r = 0; r < ROUNDS * 2; r++) {
  // Alternated: the viewer's page of 100 (a new offset each round), then the folder's 100 files.
  pages.push(await viewerPage((r * 99_991 + 12_345) % Math.max(1, RECORDS - PAGE)))
  baseline.push(await staticPage(r))
}
const pageLoad = load()
await browser.close()
await viewer.close()
staticServer.close()
await store.close()
await rm(root, { recursive: true, force: true })

const date = new Date()
const machine = machineInfo(date)
const ms = (x: number) => `${Math.round(x)} ms`
const section = `## ui: the viewer in headless Chromium (issue 17)

${date.toISOString().slice(0, 10)}, ${describeMachine(machine)}. A folder store of
${RECORDS.toLocaleString('en')} records (a 16x16 PGM image served as PNG, label, split, an 8-d embedding) in
buckets of ${BUCKET}, and ${RUNS.length} sweep branches with a \`prediction\` layer each (built in
${buildSeconds.toFixed(0)} s). Debian's Chromium 1280x800 through puppeteer-core, cache off; each
figure from navigation start to the view drawn and all its images decoded (images of at most
8 KiB come inline with a page of records as PNG data URLs; larger ones by URL). Cold: the first
request after the server started (nothing cached); warm: median of ${ROUNDS} (the state's
dataset, codecs and the comparison cached by manifest CID). Load average (1, 5, 15 min) when
measured in the last column.

${markdownTable(
  ['what', 'cold', 'warm (median)', 'goal', 'load'],
  [
    [
      `records grid, 48 records at offset ${middle.toLocaleString('en')}`,
      ms(gridCold),
      ms(median(gridWarm)),
      '< 1 s',
      gridLoad,
    ],
    [
      `comparison view, ${RUNS.length} runs × ${RECORDS.toLocaleString('en')} records`,
      ms(compareCold),
      ms(median(compareWarm)),
      '< 1 s',
      compareLoad,
    ],
    ['a heat-map cell clicked → 24 disagreeing records with images', '', ms(median(clicks)), '', pageLoad],
    ...others.map((o) => [o.what, ms(o.cold), ms(median(o.warm)), '', o.load]),
    [
      `a page of ${PAGE} records with images (a new offset each round)`,
      '',
      ms(median(pages)),
      '< 200 ms',
      pageLoad,
    ],
    [
      `baseline: ${PAGE} PNG files from a folder, plain static server`,
      '',
      ms(median(baseline)),
      '',
      pageLoad,
    ],
  ],
)}

Per page of ${PAGE}: viewer/baseline ${(median(pages) / median(baseline)).toFixed(2)}x (medians of
${ROUNDS * 2} alternated rounds).
`
console.log(section)
await writeResults(
  'ui',
  date,
  {
    machine,
    records: RECORDS,
    bucket: BUCKET,
    buildSeconds,
    results,
    clicks,
    others,
    pages,
    baseline,
    pageLoad,
  },
  section,
)
process.exit(0)
