/**
 * The viewer end to end in a real headless Chromium (Debian's, driven by puppeteer-core; no
 * browser download): the built `dreamdb ui` serving the quickstart's store, each view opened
 * and what it shows checked against the API's answers, the sweep comparison clicked through
 * to the disagreeing records; then the grid and the comparison on the 1M-record store that
 * `pnpm bench ui` times (test/big-store.ts). Screenshots go to $TMPDIR/dreamdb-ui-screenshots (printed).
 * Run by `pnpm --filter @dreamdb/cli test:browser` (tools/test.sh, after the build); not part
 * of the default `vitest run`, which stays fast.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import puppeteer, { type Browser, type Page } from 'puppeteer-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { BIG_RUNS, ensureBigStore } from './big-store.js'

const CLI_ROOT = fileURLToPath(new URL('..', import.meta.url))
const REPO = join(CLI_ROOT, '..', '..')
const DIST = join(CLI_ROOT, 'dist', 'index.js')
const TSX = join(CLI_ROOT, 'node_modules', 'tsx', 'dist', 'esm', 'index.mjs')
export const SHOTS = join(tmpdir(), 'dreamdb-ui-screenshots')

/** Debian's Chromium, or the one named by CHROMIUM_PATH. */
export function findChromium(): string | undefined {
  return [process.env.CHROMIUM_PATH, '/usr/bin/chromium', '/usr/bin/chromium-browser'].find(
    (p) => p !== undefined && p !== '' && existsSync(p),
  )
}

const CHROMIUM = findChromium()
// Like the MinIO suites: without a browser the tests are skipped with a warning, except in CI
// (CI=true), where a missing browser fails the run.
const SKIP = CHROMIUM === undefined && !process.env.CI
if (SKIP)
  console.warn('dreamdb ui e2e: SKIPPED, no Chromium (apt-get install chromium, or set CHROMIUM_PATH)')

/** `dreamdb ui --port 0 --json` from the built package; resolves with its URL. */
export function startCli(backend: string): Promise<{ url: string; child: ChildProcess }> {
  if (!existsSync(DIST) || !existsSync(join(CLI_ROOT, 'dist', 'ui', 'app.js'))) {
    throw new Error('the CLI is not built: pnpm --filter @dreamdb/cli build')
  }
  const child = spawn(process.execPath, [DIST, 'ui', '--backend', backend, '--port', '0', '--json'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  return new Promise((resolve, reject) => {
    let out = ''
    let err = ''
    child.stderr!.on('data', (c: Buffer) => {
      err += c
    })
    child.stdout!.on('data', (c: Buffer) => {
      out += c
      try {
        resolve({ url: (JSON.parse(out) as { url: string }).url, child })
      } catch {}
    })
    child.on('exit', (code) => reject(new Error(`dreamdb ui exited ${code}: ${err}`)))
  })
}

/** The quickstart (real MNIST digits, a 4-run sweep, a tag) into a fresh folder backend. */
export async function quickstartStore(dir: string): Promise<string> {
  const backend = join(dir, 'store')
  await promisify(execFile)(process.execPath, ['--import', TSX, join(REPO, 'tools/quickstart/src/main.ts')], {
    cwd: dir,
    env: { ...process.env, DREAMDB_BACKEND: backend },
  })
  return backend
}

/** Wait until the app says the view has drawn its data (or failed: then the test fails). */
async function shown(page: Page, view: string): Promise<void> {
  await page.waitForFunction(
    (v) => document.body.dataset.state === `ready:${v}` || document.body.dataset.state === 'error',
    { timeout: 30_000 },
    view,
  )
  const state = await page.evaluate(() => document.body.dataset.state)
  if (state === 'error') throw new Error(await page.$eval('[data-testid=error]', (e) => e.textContent ?? ''))
}

async function open(page: Page, hash: string, view: string, screenshot?: string): Promise<void> {
  await page.evaluate(() => {
    document.body.dataset.state = 'navigating'
  })
  await page.evaluate((h) => {
    // The same hash again fires no hashchange: the app is asked to draw it anyway.
    if (location.hash === h) window.dispatchEvent(new HashChangeEvent('hashchange'))
    else location.hash = h
  }, hash)
  await shown(page, view)
  if (screenshot) await page.screenshot({ path: join(SHOTS, `${screenshot}.png`), fullPage: false })
}

const texts = (page: Page, selector: string) =>
  page.$$eval(selector, (els) => els.map((e) => (e.textContent ?? '').trim()))

const pct = (x: number) => `${(100 * x).toFixed(1)}%`

/** The grid's cards: the positions and labels of the API's page, in its order. */
async function expectCardsAsApi(
  page: Page,
  want: { records: { position: number; values: { label: string } }[] },
): Promise<number[]> {
  const positions = await page.$$eval('[data-testid=grid] [data-testid=card]', (cs) =>
    cs.map((c) => Number(c.getAttribute('data-position'))),
  )
  expect(positions).toEqual(want.records.map((r) => r.position))
  expect(await texts(page, '[data-field=label]')).toEqual(want.records.map((r) => r.values.label))
  return positions
}

/** The heat map: each run's accuracy on the diagonal, the agreement elsewhere, as the API says. */
async function expectCellsAsApi(
  page: Page,
  cmp: { refs: string[]; accuracy: number[]; agreement: number[][] },
): Promise<void> {
  const cells = await page.$$eval('[data-testid=cell]', (tds) =>
    tds.map((t) => [Number(t.getAttribute('data-i')), Number(t.getAttribute('data-j')), t.textContent]),
  )
  expect(cells).toHaveLength(cmp.refs.length ** 2)
  for (const [i, j, text] of cells as [number, number, string][]) {
    expect(text).toBe(i === j ? pct(cmp.accuracy[i]!) : pct(cmp.agreement[i]![j]!))
  }
}

/** The records shown after a cell's click: the API's disagreements of the two runs, in order. */
async function expectDisagreementsAsApi(
  page: Page,
  a: string,
  b: string,
  want: { total: number; records: { anchor: string; a: string; b: string; label: string }[] },
): Promise<void> {
  expect(await texts(page, '[data-testid=pair]')).toEqual([`${a} vs ${b}: ${want.total} records disagree`])
  const shownRecords = await page.$$eval('[data-testid=disagreement]', (cs) =>
    cs.map((c) => ({
      anchor: c.getAttribute('data-anchor'),
      a: c.querySelector('[data-role=a]')?.textContent,
      b: c.querySelector('[data-role=b]')?.textContent,
      label: c.querySelector('[data-role=label]')?.textContent,
    })),
  )
  expect(shownRecords).toEqual(
    want.records.map((r) => ({ anchor: r.anchor, a: r.a, b: r.b, label: r.label })),
  )
  for (const r of shownRecords) expect(r.a).not.toBe(r.b)
}

let dir: string
let backend: string
let viewer: { url: string; child: ChildProcess }
let browser: Browser
let page: Page
const outside: string[] = []

// biome-ignore lint/suspicious/noExplicitAny: API documents, checked field by field below
const api = async (path: string): Promise<any> => {
  const res = await fetch(new URL(`/api/${path}`, viewer.url))
  expect(res.status, path).toBe(200)
  return await res.json()
}

describe.skipIf(SKIP)('dreamdb ui in headless Chromium, on the quickstart store', { timeout: 60_000 }, () => {
  beforeAll(async () => {
    if (CHROMIUM === undefined) throw new Error('no Chromium: apt-get install chromium, or set CHROMIUM_PATH')
    dir = await mkdtemp(join(tmpdir(), 'dreamdb-ui-e2e-'))
    await mkdir(SHOTS, { recursive: true })
    backend = await quickstartStore(dir)
    viewer = await startCli(backend)
    browser = await puppeteer.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu'],
    })
    page = await browser.newPage()
    await page.setViewport({ width: 1280, height: 800 })
    page.on('request', (r) => {
      if (!r.url().startsWith(viewer.url) && !r.url().startsWith('data:')) outside.push(r.url())
    })
    await page.goto(new URL('#/refs', viewer.url).href)
    await shown(page, 'refs')
    console.log(`dreamdb ui e2e: screenshots in ${SHOTS}`)
  }, 120_000)

  afterAll(async () => {
    await browser?.close()
    viewer?.child.kill('SIGINT')
    if (dir) await rm(dir, { recursive: true, force: true })
  })

  it('refs and history: every ref, the DAG with every state, a commit on click', async () => {
    await open(page, '#/refs', 'refs', 'refs')
    const refs = await api('refs')
    const rows = await page.$$eval('[data-testid=refs] tr[data-ref]', (trs) =>
      trs.map((t) => t.getAttribute('data-ref')),
    )
    expect(rows).toEqual(refs.refs.map((r: { name: string }) => r.name))
    const graph = await api('graph?limit=300')
    const nodes = await page.$$eval('[data-testid=dag] g.node', (gs) =>
      gs.map((g) => g.getAttribute('data-manifest')),
    )
    expect(nodes).toEqual(graph.nodes.map((n: { manifest: string }) => n.manifest))
    const mnist = refs.refs.find((r: { name: string }) => r.name === 'mnist')
    await page.click(`[data-testid=dag] g.node[data-manifest="${mnist.manifest}"] circle`)
    await page.waitForSelector('[data-testid=commit-records]')
    const commit = await api(`commit?ref=${mnist.manifest}`)
    expect(await texts(page, '[data-testid=commit-records]')).toEqual([
      `${commit.stats.records} in ${commit.stats.buckets} buckets`,
    ])
  })

  it('records: a page of images with their fields, the next page, a filter', async () => {
    await open(page, '#/records?ref=mnist&limit=48', 'records', 'records')
    await expectCardsAsApi(page, await api('records?ref=mnist&limit=48&offset=0'))
    // Every image decoded (PGM served as PNG).
    await page.waitForFunction(() =>
      [...document.querySelectorAll('[data-testid=grid] img')].every((i) => (i as HTMLImageElement).complete),
    )
    const widths = await page.$$eval('[data-testid=grid] img', (imgs) =>
      imgs.map((i) => (i as HTMLImageElement).naturalWidth),
    )
    expect(widths).toEqual(new Array(48).fill(28))
    // Inline with the page as PNG data URLs; the same bytes as the image URL serves.
    const { src, url } = await page.$eval('[data-testid=grid] img', (i) => ({
      src: i.getAttribute('src') ?? '',
      url: i.getAttribute('data-url') ?? '',
    }))
    expect(src.startsWith('data:image/png;base64,')).toBe(true)
    const served = await fetch(new URL(url, viewer.url))
    expect(served.headers.get('content-type')).toBe('image/png')
    expect(Buffer.from(await served.arrayBuffer()).toString('base64')).toBe(
      src.slice('data:image/png;base64,'.length),
    )
    await page.evaluate(() => {
      document.body.dataset.state = 'navigating'
    })
    await page.click('[data-testid=next]')
    await shown(page, 'records')
    const second = await page.$$eval('[data-testid=card]', (cs) =>
      cs.map((c) => Number(c.getAttribute('data-position'))),
    )
    expect(second[0]).toBe(48)
    await open(
      page,
      '#/records?ref=mnist&limit=48&filter=label%3D3,split%3Dvalidation',
      'records',
      'records-filtered',
    )
    const filtered = await api('records?ref=mnist&limit=48&filter=label%3D3,split%3Dvalidation')
    expect(filtered.records.length).toBeGreaterThan(0)
    const got = await page.$$eval('[data-testid=card]', (cs) =>
      cs.map((c) => Number(c.getAttribute('data-position'))),
    )
    expect(got).toEqual(filtered.records.map((r: { position: number }) => r.position))
    for (const label of await texts(page, '[data-field=label]')) expect(label).toBe('3')
  })

  it('a record with every field, and its nearest records', async () => {
    await open(page, '#/record?ref=mnist&position=5', 'record', 'record')
    const doc = await api('record?ref=mnist&position=5')
    const fields = await page.$$eval('[data-testid=record] tr', (trs) =>
      trs.map((t) => t.getAttribute('data-field')),
    )
    expect(fields).toEqual(doc.fields.map((f: { name: string }) => f.name))
    const vector = await texts(page, '[data-testid=record] tr[data-field=embedding] td:last-child')
    expect(vector[0]!.split(',')).toHaveLength(49)
    await page.evaluate(() => {
      document.body.dataset.state = 'navigating'
    })
    await page.click('[data-testid=similar-link]')
    await shown(page, 'similar')
    await page.screenshot({ path: join(SHOTS, 'similar.png') })
    const near = await api(`similar?ref=${doc.manifest}&position=5&k=24`)
    const hits = await page.$$eval('[data-testid=card]', (cs) => cs.map((c) => c.getAttribute('data-anchor')))
    expect(hits).toEqual(near.hits.map((h: { anchor: string }) => h.anchor))
    expect(hits[0]).toBe(doc.record.anchor)
  })

  it('sweep comparison: the heat map, accuracy per run, a cell opens the disagreeing records', async () => {
    const refs = (await api('refs')).refs.map((r: { name: string }) => r.name)
    const prefix = refs.find((n: string) => n.startsWith('sweep/'))!.replace(/[^/]+$/, '')
    await open(page, `#/compare?prefix=${encodeURIComponent(prefix)}`, 'compare')
    const cmp = await api(`compare?prefix=${encodeURIComponent(prefix)}&field=prediction`)
    await expectCellsAsApi(page, cmp)
    expect(await texts(page, '[data-testid=accuracy]')).toEqual(cmp.accuracy.map(pct))
    await page.evaluate(() => {
      document.body.dataset.state = 'navigating'
    })
    await page.click('[data-testid=cell][data-i="0"][data-j="1"]')
    await shown(page, 'disagreements')
    await page.waitForFunction(() =>
      [...document.querySelectorAll('[data-testid=disagreement] img')].every(
        (i) => (i as HTMLImageElement).complete,
      ),
    )
    await page.screenshot({ path: join(SHOTS, 'compare.png') })
    const page1 = await api(
      `disagreements?refs=${cmp.refs[0]},${cmp.refs[1]}&context=${cmp.refs.join(',')}&field=prediction&limit=24`,
    )
    await expectDisagreementsAsApi(page, cmp.refs[0], cmp.refs[1], page1)
    // Two runs named instead of a prefix.
    await open(page, `#/compare?refs=${encodeURIComponent(`${cmp.refs[0]},${cmp.refs[2]}`)}`, 'compare')
    const pair = await page.$$eval('[data-testid=cell]', (tds) => tds.map((t) => t.textContent))
    expect(pair).toEqual([
      pct(cmp.accuracy[0]),
      pct(cmp.agreement[0][2]),
      pct(cmp.agreement[2][0]),
      pct(cmp.accuracy[2]),
    ])
  })

  it('inspect a tag and diff the baseline with a sweep run', async () => {
    const refs = (await api('refs')).refs.map((r: { name: string }) => r.name)
    const tag = refs.find((n: string) => n.startsWith('prod-'))!
    const baseline = refs.find((n: string) => n.startsWith('sweep-baseline-'))!
    const run = refs.find((n: string) => n.startsWith('sweep/'))!
    await open(page, `#/inspect?ref=${tag}&a=${baseline}&b=${encodeURIComponent(run)}`, 'inspect', 'inspect')
    const doc = await api(`inspect?ref=${tag}`)
    const splits = await page.$$eval('[data-testid=splits] [data-split]', (cs) =>
      cs.map((c) => c.textContent),
    )
    expect(splits).toEqual(Object.entries(doc.splits).map(([k, v]) => `${k} ${v}`))
    expect(await page.$$eval('[data-testid=history] li', (lis) => lis.length)).toBe(doc.history.length)
    const d = await api(`diff?a=${baseline}&b=${encodeURIComponent(run)}`)
    expect(d.layers.added).toEqual(['prediction'])
    expect(await texts(page, '[data-testid=diff-layers]')).toEqual(['+prediction'])
    expect(await texts(page, '[data-testid=diff-records]')).toEqual([
      `+${d.records.added} −${d.records.removed}`,
    ])
  })

  it('loaded nothing from outside the viewer', () => {
    expect(outside).toEqual([])
  })
})

// The same views on the 1M-record store `pnpm bench ui` times (built once into the cache
// folder, reused after): what a page shows still matches the API's answer at that size.
describe.skipIf(SKIP)('dreamdb ui in headless Chromium, on 1 000 000 records', { timeout: 120_000 }, () => {
  let big: { url: string; child: ChildProcess }
  let bigBrowser: Browser
  let bigPage: Page
  // biome-ignore lint/suspicious/noExplicitAny: API documents, checked field by field below
  const bigApi = async (path: string): Promise<any> => {
    const res = await fetch(new URL(`/api/${path}`, big.url))
    expect(res.status, path).toBe(200)
    return await res.json()
  }

  beforeAll(async () => {
    if (CHROMIUM === undefined) throw new Error('no Chromium: apt-get install chromium, or set CHROMIUM_PATH')
    const { store } = await ensureBigStore(1_000_000, (line) => console.log(`dreamdb ui e2e: ${line}`))
    big = await startCli(store)
    bigBrowser = await puppeteer.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu'],
    })
    bigPage = await bigBrowser.newPage()
    await bigPage.setViewport({ width: 1280, height: 800 })
    await bigPage.goto(new URL('#/refs', big.url).href)
    await shown(bigPage, 'refs')
  }, 1_200_000) // the first run on a machine builds the store (minutes)

  afterAll(async () => {
    await bigBrowser?.close()
    big?.child.kill('SIGINT')
  })

  it('records: a page of 100 from the middle, as the API lists it, every image decoded', async () => {
    await open(bigPage, '#/records?ref=big&limit=100&offset=500000', 'records', 'big-records')
    const want = await bigApi('records?ref=big&limit=100&offset=500000')
    expect(want.records).toHaveLength(100)
    expect((await expectCardsAsApi(bigPage, want))[0]).toBe(500_000)
    await bigPage.waitForFunction(() =>
      [...document.querySelectorAll('[data-testid=grid] img')].every((i) => (i as HTMLImageElement).complete),
    )
    const widths = await bigPage.$$eval('[data-testid=grid] img', (imgs) =>
      imgs.map((i) => (i as HTMLImageElement).naturalWidth),
    )
    expect(widths).toEqual(new Array(100).fill(16))
  })

  it('sweep comparison of 4 runs x 1M: cells as the API, a cell opens the records two runs disagree on', async () => {
    await open(bigPage, '#/compare?prefix=sweep%2F', 'compare', 'big-compare')
    const cmp = await bigApi('compare?prefix=sweep%2F&field=prediction')
    expect(cmp.refs).toEqual(BIG_RUNS)
    await expectCellsAsApi(bigPage, cmp)
    await bigPage.evaluate(() => {
      document.body.dataset.state = 'navigating'
    })
    await bigPage.click('[data-testid=cell][data-i="0"][data-j="3"]')
    await shown(bigPage, 'disagreements')
    const want = await bigApi(
      `disagreements?refs=${cmp.refs[0]},${cmp.refs[3]}&context=${cmp.refs.join(',')}&field=prediction&limit=24`,
    )
    expect(want.total).toBeGreaterThan(0)
    await expectDisagreementsAsApi(bigPage, cmp.refs[0], cmp.refs[3], want)
  })
})
