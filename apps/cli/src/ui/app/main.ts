/// <reference lib="dom" />
/**
 * The viewer app: one view per hash route, each drawn from the JSON API. When a view has
 * drawn its data, `body[data-state]` reads `ready:<view>` (what the browser tests and the
 * benchmark wait for); a failed request shows the error document and sets `error`.
 */
import { type ApiError, api, bytes, h, link, pct, q, route, s, short, time } from './dom.js'

interface RefRow {
  name: string
  kind?: string
  manifest?: string
  records?: number
  damaged: boolean
  code?: string
}
interface FieldInfo {
  name: string
  family: 'binary' | 'embedding' | 'scalar'
  media?: string
  kind?: string
  layer?: boolean
}
type Values = Record<string, unknown>
interface RecordRow {
  position: number
  anchor: string
  values: Values
}

const main = document.getElementById('main')!
let refsCache: Promise<{ backend: string; refs: RefRow[] }> | undefined
const allRefs = () => {
  refsCache ??= api<{ backend: string; refs: RefRow[] }>('refs')
  return refsCache
}

function ready(view: string) {
  document.body.dataset.state = `ready:${view}`
}

function showError(error: unknown) {
  if ((error as Error)?.name === 'AbortError') return
  const e = error as ApiError
  main.append(
    h(
      'div',
      { class: 'error', 'data-testid': 'error' },
      h('b', {}, e.code ?? 'error'),
      ': ',
      e.message,
      e.hint ? h('div', { class: 'dim' }, `hint: ${e.hint}`) : null,
    ),
  )
  document.body.dataset.state = 'error'
}

/** A ref picker: every ref (a branch, a snapshot), the current one selected. */
async function refSelect(current: string | null, onPick: (ref: string) => void, id = 'ref') {
  const { refs } = await allRefs()
  const select = h(
    'select',
    { id, 'data-testid': id, onchange: (e) => onPick((e.target as HTMLSelectElement).value) },
    ...refs
      .filter((r) => !r.damaged)
      .map((r) => h('option', { value: r.name, selected: r.name === current }, r.name)),
  ) as HTMLSelectElement
  if (current !== null && !refs.some((r) => r.name === current)) {
    select.prepend(h('option', { value: current, selected: true }, current))
  }
  return select
}

// -- values -----------------------------------------------------------------------------

function isBinary(v: unknown): v is { bytes: number; url: string; media?: string; inline?: string } {
  return typeof v === 'object' && v !== null && 'url' in v && 'bytes' in v
}
function isVectorPreview(v: unknown): v is { dim: number; head: number[] } {
  return typeof v === 'object' && v !== null && 'dim' in v && 'head' in v
}
const num = (x: number) => (Math.abs(x) >= 1e4 ? x.toExponential(2) : String(Number(x.toFixed(3))))

function valueText(v: unknown): string {
  if (v === null || v === undefined) return '∅'
  if (isVectorPreview(v))
    return `[${v.head.map(num).join(', ')}${v.dim > v.head.length ? `, … ×${v.dim}` : ''}]`
  if (Array.isArray(v)) return `[${v.map((x) => (typeof x === 'number' ? num(x) : String(x))).join(', ')}]`
  if (isBinary(v)) return `<${bytes(v.bytes)}>`
  return String(v)
}

function imageOf(values: Values, fields?: FieldInfo[]): HTMLElement | null {
  const names = fields ? fields.filter((f) => f.family === 'binary').map((f) => f.name) : Object.keys(values)
  for (const name of names) {
    const v = values[name]
    if (isBinary(v) && (v.media === undefined || v.media === 'image'))
      return h('img', { src: v.inline ?? v.url, alt: name, decoding: 'async', 'data-url': v.url })
  }
  return null
}

function card(row: RecordRow, ref: string, fields: FieldInfo[], extra: (Node | null)[] = []): HTMLElement {
  const chips = fields
    .filter((f) => f.family !== 'binary')
    .map((f) =>
      h(
        'div',
        {},
        h('span', { class: 'dim' }, `${f.name}${f.layer ? ' ⧉' : ''} `),
        h(
          'span',
          { class: f.family === 'embedding' ? 'mono vec' : '', 'data-field': f.name },
          valueText(row.values[f.name]),
        ),
      ),
    )
  return h(
    'div',
    { class: 'card', 'data-testid': 'card', 'data-position': row.position, 'data-anchor': row.anchor },
    h(
      'a',
      { class: 'open', href: link('record', { ref, position: row.position }) },
      imageOf(row.values, fields),
      h('div', { class: 'dim' }, `#${row.position} · anchor ${row.anchor}`),
      ...chips,
    ),
    ...extra,
  )
}

// -- views ------------------------------------------------------------------------------

/** Refs and the manifest DAG (SVG), a commit's details on click. */
async function refsView(params: URLSearchParams, signal: AbortSignal) {
  const [{ refs }, graph] = await Promise.all([
    allRefs(),
    api<{ nodes: GraphNode[]; truncated: boolean }>('graph?limit=300', signal),
  ])
  const details = h(
    'div',
    { class: 'panel', id: 'commit', 'data-testid': 'commit' },
    h('p', { class: 'dim' }, 'Click a state in the graph for its details.'),
  )
  const table = h(
    'table',
    { 'data-testid': 'refs' },
    h(
      'tr',
      {},
      h('th', {}, 'ref'),
      h('th', {}, 'kind'),
      h('th', {}, 'records'),
      h('th', {}, 'manifest'),
      h('th', {}, ''),
    ),
    ...refs.map((r) =>
      r.damaged
        ? h('tr', {}, h('td', {}, r.name), h('td', { colspan: 4, class: 'error' }, `damaged: ${r.code}`))
        : h(
            'tr',
            { 'data-ref': r.name },
            h('td', {}, r.name),
            h('td', {}, r.kind),
            h('td', { class: 'num' }, r.records),
            h('td', { class: 'mono' }, short(r.manifest!)),
            h(
              'td',
              {},
              h('a', { href: link('records', { ref: r.name }) }, 'records'),
              ' · ',
              h('a', { href: link('inspect', { ref: r.name }) }, 'inspect'),
            ),
          ),
    ),
  )
  const showCommit = async (manifest: string) => {
    details.replaceChildren(h('p', { class: 'dim' }, 'Loading…'))
    try {
      const c = await api<CommitDoc>(`commit?${q({ ref: manifest })}`, signal)
      details.replaceChildren(commitDetails(c))
    } catch (error) {
      details.replaceChildren(h('div', { class: 'error' }, (error as Error).message))
    }
  }
  const selected = params.get('state')
  main.replaceChildren(
    h('h2', {}, 'Refs and history'),
    h(
      'div',
      { class: 'split' },
      h('div', {}, h('div', { class: 'panel' }, table), h('h3', {}, 'Commit'), details),
      h(
        'div',
        { class: 'panel' },
        h(
          'div',
          { class: 'dim' },
          `${graph.nodes.length} states${graph.truncated ? ' (newest shown)' : ''}, newest first`,
        ),
        dag(graph.nodes, (m) => {
          history.replaceState(null, '', link('refs', { state: m }))
          void showCommit(m)
        }),
      ),
    ),
  )
  if (selected) await showCommit(selected)
  ready('refs')
}

interface GraphNode {
  manifest: string
  parents: string[]
  summary: string
  message: string
  timestamp: number
  records: number
  refs: { name: string; kind: string }[]
}

/** Lanes: a state continues the lane that expects it (its child's first parent), or opens one. */
function dag(nodes: GraphNode[], onPick: (manifest: string) => void): SVGElement {
  const lanes: (string | null)[] = []
  const placed = new Map<string, { x: number; y: number }>()
  const ROW = 34
  const LANE = 18
  nodes.forEach((n, row) => {
    let lane = lanes.indexOf(n.manifest)
    if (lane < 0) {
      lane = lanes.indexOf(null)
      if (lane < 0) lane = lanes.push(null) - 1
    }
    // Other lanes that expected this state end here.
    for (let i = 0; i < lanes.length; i++) if (lanes[i] === n.manifest) lanes[i] = null
    lanes[lane] = n.parents[0] ?? null
    for (const p of n.parents.slice(1)) {
      if (!lanes.includes(p)) {
        const free = lanes.indexOf(null)
        if (free < 0) lanes.push(p)
        else lanes[free] = p
      }
    }
    placed.set(n.manifest, { x: 12 + lane * LANE, y: 16 + row * ROW })
  })
  const width = 12 + Math.max(1, lanes.length) * LANE
  const svg = s('svg', { width: width + 520, height: 16 + nodes.length * ROW, 'data-testid': 'dag' })
  for (const n of nodes) {
    const from = placed.get(n.manifest)!
    for (const p of n.parents) {
      const to = placed.get(p)
      if (to === undefined) continue
      svg.append(
        s('path', {
          d: `M${from.x},${from.y} C${from.x},${from.y + ROW / 2} ${to.x},${to.y - ROW / 2} ${to.x},${to.y}`,
          fill: 'none',
          stroke: '#94a3b8',
          'stroke-width': 1.5,
        }),
      )
    }
  }
  for (const n of nodes) {
    const { x, y } = placed.get(n.manifest)!
    const g = s('g', { class: 'node', 'data-manifest': n.manifest })
    g.addEventListener('click', () => onPick(n.manifest))
    const hasRef = n.refs.length > 0
    g.append(s('circle', { cx: x, cy: y, r: hasRef ? 6 : 4, fill: hasRef ? '#2563eb' : '#64748b' }))
    const label = s('text', { x: width + 4, y: y + 4 })
    label.append(
      s(
        'tspan',
        { fill: '#0f172a', 'font-weight': 600 },
        n.refs.map((r) => `${r.name}${r.kind === 'snapshot' ? ' ◆' : ''}`).join(', '),
      ),
      s(
        'tspan',
        { fill: '#475569', dx: hasRef ? 6 : 0 },
        `${n.summary} · ${n.records} records · ${short(n.manifest)}`,
      ),
    )
    g.append(label, s('title', {}, `${n.manifest}\n${time(n.timestamp)}\n${n.message}`))
    svg.append(g)
  }
  return svg
}

interface CommitDoc {
  manifest: string
  ref: { name: string; kind: string } | null
  message: string
  timestamp: number
  parents: string[]
  depth: number
  schema: { fields: FieldInfo[] }
  layers: { name: string; parent: string; records: number; bytes: number; segments: number }[]
  stats: { records: number; buckets: number; bytes: Record<string, number> }
  objects: { count: number; bytes: number; byRole?: Record<string, { count: number; bytes: number }> }
}

function commitDetails(c: CommitDoc): HTMLElement {
  return h(
    'div',
    {},
    h(
      'div',
      { class: 'kv' },
      h('span', { class: 'k' }, 'manifest'),
      h('span', { class: 'mono' }, c.manifest),
      h('span', { class: 'k' }, 'committed'),
      h('span', {}, `${time(c.timestamp)} ${c.message ? `· ${c.message}` : ''}`),
      h('span', { class: 'k' }, 'records'),
      h('span', { 'data-testid': 'commit-records' }, `${c.stats.records} in ${c.stats.buckets} buckets`),
      h('span', { class: 'k' }, 'objects'),
      h('span', {}, `${c.objects.count} (${bytes(c.objects.bytes)})`),
      h('span', { class: 'k' }, 'parents'),
      h('span', { class: 'mono' }, c.parents.map(short).join(', ') || '(root)'),
    ),
    h(
      'table',
      {},
      h('tr', {}, h('th', {}, 'field'), h('th', {}, 'family'), h('th', {}, 'stored')),
      ...c.schema.fields.map((f) =>
        h(
          'tr',
          {},
          h('td', {}, f.name),
          h('td', {}, `${f.family} ${f.media ?? f.kind ?? ''}`),
          h('td', { class: 'num' }, bytes(c.stats.bytes[f.name] ?? 0)),
        ),
      ),
      ...c.layers.map((l) =>
        h(
          'tr',
          {},
          h('td', {}, `${l.name} ⧉`),
          h('td', {}, `layer on ${l.parent}, ${l.records} values`),
          h('td', { class: 'num' }, bytes(l.bytes)),
        ),
      ),
    ),
    h(
      'p',
      {},
      h('a', { href: link('records', { ref: c.manifest }) }, 'records of this state'),
      ' · ',
      h('a', { href: link('inspect', { ref: c.manifest }) }, 'inspect'),
    ),
  )
}

interface RecordsDoc {
  ref: string
  manifest: string
  total: number
  fields: FieldInfo[]
  offset?: number
  from?: number
  next: number | null
  scanned?: number
  records: RecordRow[]
}

/** A page of records of a ref: offset paging, or a filter scanned with a cursor. */
async function recordsView(params: URLSearchParams, signal: AbortSignal) {
  const ref = params.get('ref') ?? (await allRefs()).refs.find((r) => !r.damaged)?.name ?? null
  if (ref === null) {
    main.replaceChildren(h('p', {}, 'This store has no refs yet.'))
    return ready('records')
  }
  const filter = params.get('filter') ?? ''
  const differ = params.get('differ') ?? ''
  const limit = Number(params.get('limit') ?? 48)
  const filtered = filter !== '' || differ !== ''
  const at = filtered ? Number(params.get('from') ?? 0) : Number(params.get('offset') ?? 0)
  const started = performance.now()
  // Asked for at once, beside the ref list the picker needs: one round trip, not two.
  const pageRequest = api<RecordsDoc>(
    `records?${q({ ref, limit, ...(filtered ? { filter, differ, from: at } : { offset: at }) })}`,
    signal,
  )
  pageRequest.catch(() => {}) // awaited below; an early failure is not unhandled meanwhile
  const go = (changes: Record<string, string | number | null>) => {
    location.hash = link('records', { ref, filter, differ, limit, ...changes })
  }
  const filterInput = h('input', {
    id: 'filter',
    'data-testid': 'filter',
    size: 28,
    placeholder: 'label=3,split=train',
    value: filter,
  }) as HTMLInputElement
  const differInput = h('input', {
    id: 'differ',
    size: 18,
    placeholder: 'prediction,label',
    value: differ,
  }) as HTMLInputElement
  const bar = h(
    'form',
    {
      class: 'bar',
      onsubmit: (e) => {
        e.preventDefault()
        go({
          filter: filterInput.value.trim(),
          differ: differInput.value.trim(),
          offset: null,
          from: null,
          back: null,
        })
      },
    },
    await refSelect(ref, (r) => {
      location.hash = link('records', { ref: r })
    }),
    h('label', {}, 'where ', filterInput),
    h('label', {}, 'differ ', differInput),
    h('button', { type: 'submit' }, 'Filter'),
  )
  main.replaceChildren(h('h2', {}, `Records of ${ref}`), bar, h('p', { class: 'dim' }, 'Loading…'))
  const page = await pageRequest
  const back = params.get('back')
  const pager = h(
    'div',
    { class: 'bar' },
    h(
      'button',
      {
        'data-testid': 'prev',
        disabled: filtered ? back === null : at === 0,
        onclick: () => {
          if (filtered) {
            const stack = (back ?? '').split('.').filter((x) => x !== '')
            const prev = stack.pop() ?? '0'
            go({ from: prev, back: stack.join('.') || null })
          } else go({ offset: Math.max(0, at - limit) })
        },
      },
      '← previous',
    ),
    h(
      'button',
      {
        'data-testid': 'next',
        disabled: page.next === null,
        onclick: () =>
          filtered
            ? go({ from: page.next, back: [back, at].filter((x) => x !== null && x !== '').join('.') })
            : go({ offset: page.next }),
      },
      'next →',
    ),
    h(
      'span',
      { class: 'dim', 'data-testid': 'page-info' },
      filtered
        ? `${page.records.length} matching from record ${at} (${page.scanned} of ${page.total} examined)`
        : `records ${at}–${at + page.records.length - 1} of ${page.total}`,
      ` · ${Math.round(performance.now() - started)} ms`,
    ),
  )
  const grid = h(
    'div',
    { class: 'grid', 'data-testid': 'grid' },
    ...page.records.map((r) => card(r, page.manifest, page.fields)),
  )
  main.replaceChildren(h('h2', {}, `Records of ${ref}`), bar, pager, grid)
  ready('records')
}

/** One record: every field and layer, vectors in full. */
async function recordView(params: URLSearchParams, signal: AbortSignal) {
  const ref = params.get('ref') ?? ''
  const position = params.get('position') ?? '0'
  const doc = await api<{ manifest: string; fields: FieldInfo[]; record: RecordRow }>(
    `record?${q({ ref, position, anchor: params.get('anchor') })}`,
    signal,
  )
  const r = doc.record
  const rows = doc.fields.map((f) => {
    const v = r.values[f.name]
    const cell = isBinary(v)
      ? h('span', {}, imageOf({ [f.name]: v }) ?? '', ` ${bytes(v.bytes)} `, h('a', { href: v.url }, 'bytes'))
      : h('span', { class: f.family === 'embedding' ? 'mono vec' : '' }, valueText(v))
    return h(
      'tr',
      { 'data-field': f.name },
      h('th', {}, f.name, f.layer ? ' ⧉' : ''),
      h('td', {}, `${f.family} ${f.media ?? f.kind ?? ''}`),
      h('td', {}, cell),
    )
  })
  const big = imageOf(r.values, doc.fields)
  big?.setAttribute('style', 'width:224px;height:224px;image-rendering:pixelated;background:#000')
  main.replaceChildren(
    h('h2', {}, `Record #${r.position} of ${ref}`),
    h(
      'p',
      {},
      `anchor ${r.anchor} · state `,
      h('span', { class: 'mono' }, short(doc.manifest)),
      ' · ',
      h(
        'a',
        { href: link('similar', { ref: doc.manifest, position: r.position }), 'data-testid': 'similar-link' },
        'similar records',
      ),
    ),
    h('div', { class: 'split' }, h('div', {}, big), h('table', { 'data-testid': 'record' }, ...rows)),
  )
  ready('record')
}

/** The nearest records of a record, through the dataset's search. */
async function similarView(params: URLSearchParams, signal: AbortSignal) {
  const ref = params.get('ref') ?? ''
  const doc = await api<{
    manifest: string
    field: string
    metric: string
    position: number
    hits: (RecordRow & { rank: number; distance: number })[]
  }>(
    `similar?${q({ ref, position: params.get('position'), field: params.get('field'), k: params.get('k') ?? 24 })}`,
    signal,
  )
  const fields: FieldInfo[] = [...new Set(doc.hits.flatMap((hit) => Object.keys(hit.values)))].map(
    (name) => ({
      name,
      family: doc.hits.some((hit) => isBinary(hit.values[name])) ? 'binary' : 'scalar',
    }),
  )
  main.replaceChildren(
    h('h2', {}, `Records nearest to #${doc.position}`),
    h('p', { class: 'dim' }, `by ${doc.field} (${doc.metric}); distance: smaller is closer`),
    h(
      'div',
      { class: 'grid', 'data-testid': 'grid' },
      ...doc.hits.map((hit) =>
        card(hit, doc.manifest, fields, [
          h('div', { class: 'chip', 'data-testid': 'distance' }, `${hit.rank}. d=${hit.distance.toFixed(4)}`),
        ]),
      ),
    ),
  )
  ready('similar')
}

interface CompareDoc {
  field: string
  refs: string[]
  agreement: number[][]
  overlap: number[][]
  counts: number[]
  label: string | null
  accuracy: (number | null)[]
  records: number
}

/** Red (0) to green (1) through yellow. */
const heat = (x: number) => `hsl(${Math.round(120 * x)}, 70%, ${Math.round(82 - 20 * x)}%)`

function commonPrefix(names: string[]): string {
  const slashed = names.filter((n) => n.includes('/'))
  const first = slashed[0]
  return first ? first.slice(0, first.lastIndexOf('/') + 1) : ''
}

/** The sweep's agreement matrix as a heat map; a cell opens the records the two runs disagree on. */
async function compareView(params: URLSearchParams, signal: AbortSignal) {
  const prefix =
    params.get('prefix') ??
    (params.get('refs')
      ? null
      : commonPrefix((await allRefs()).refs.filter((r) => !r.damaged).map((r) => r.name)))
  const field = params.get('field') || 'prediction'
  const compareRequest = api<CompareDoc>(`compare?${q({ prefix, refs: params.get('refs'), field })}`, signal)
  compareRequest.catch(() => {}) // awaited below
  const prefixInput = h('input', {
    id: 'prefix',
    'data-testid': 'prefix',
    value: prefix ?? '',
    size: 24,
  }) as HTMLInputElement
  const fieldInput = h('input', { id: 'field', value: field, size: 12 }) as HTMLInputElement
  const refsInput = h('input', {
    id: 'refs',
    'data-testid': 'refs-input',
    value: params.get('refs') ?? '',
    size: 32,
    placeholder: 'or refs: a,b,c',
  }) as HTMLInputElement
  const bar = h(
    'form',
    {
      class: 'bar',
      onsubmit: (e) => {
        e.preventDefault()
        const refs = refsInput.value.trim()
        location.hash = link(
          'compare',
          refs ? { refs, field: fieldInput.value } : { prefix: prefixInput.value, field: fieldInput.value },
        )
      },
    },
    h('label', {}, 'refs starting with ', prefixInput),
    refsInput,
    h('label', {}, 'field ', fieldInput),
    h('button', { type: 'submit' }, 'Compare'),
  )
  main.replaceChildren(h('h2', {}, 'Sweep comparison'), bar, h('p', { class: 'dim' }, 'Loading…'))
  const doc = await compareRequest
  const names = doc.refs
  // Colours span the values shown (a sweep's runs often agree 70-95%: a 0-1 scale would paint
  // every cell the same green); the lowest is red, 100% green.
  const shown = [
    ...doc.agreement.flatMap((row, i) => row.filter((_, j) => j !== i)),
    ...doc.accuracy.filter((x) => x !== null),
  ]
  const low = Math.min(...shown, 0.999)
  const shade = (x: number) => heat((x - low) / (1 - low))
  const strip = (n: string) => (prefix && n.startsWith(prefix) ? n.slice(prefix.length) : n)
  const panel = h(
    'div',
    { class: 'panel', id: 'disagreements', 'data-testid': 'disagreements' },
    h(
      'p',
      { class: 'dim' },
      'Click a cell: the records where the two runs disagree (the diagonal: where a run disagrees with the label).',
    ),
  )
  const open = (i: number, j: number, offset = 0) => {
    history.replaceState(
      null,
      '',
      link('compare', { prefix, refs: params.get('refs'), field, a: i, b: j, offset }),
    )
    void showDisagreements(panel, doc, i, j, offset, signal)
  }
  const table = h(
    'table',
    { class: 'heat', 'data-testid': 'matrix' },
    h(
      'tr',
      {},
      h('th', {}),
      ...names.map((n) => h('th', { class: 'col', title: n }, strip(n))),
      doc.label ? h('th', {}, `accuracy vs ${doc.label}`) : null,
    ),
    ...names.map((n, i) =>
      h(
        'tr',
        {},
        h('th', { class: 'row', title: n }, strip(n)),
        ...names.map((_, j) => {
          const value = i === j ? doc.accuracy[i] : doc.agreement[i]![j]!
          const clickable = i !== j || doc.label !== null
          return h(
            'td',
            {
              class: 'cell',
              'data-testid': 'cell',
              'data-i': i,
              'data-j': j,
              style:
                value === null || value === undefined ? 'background:#f1f5f9' : `background:${shade(value)}`,
              title:
                i === j
                  ? `${n} vs ${doc.label ?? 'itself'}`
                  : `${n} vs ${names[j]}: ${doc.overlap[i]![j]} records in both`,
              onclick: clickable ? () => open(i, j) : null,
            },
            i === j ? (doc.label ? pct(value) : '—') : pct(value),
          )
        }),
        doc.label ? h('td', { class: 'num', 'data-testid': 'accuracy' }, pct(doc.accuracy[i])) : null,
      ),
    ),
  )
  main.replaceChildren(
    h('h2', {}, `Sweep comparison: '${doc.field}' across ${names.length} refs`),
    bar,
    h(
      'p',
      { class: 'dim' },
      `${doc.records} records; cells: share of records both runs predict the same; diagonal: accuracy against ${doc.label ?? '(no label)'}`,
    ),
    h('div', { class: 'split' }, h('div', { class: 'panel' }, table), panel),
  )
  const a = params.get('a')
  const b = params.get('b')
  if (a !== null && b !== null)
    await showDisagreements(panel, doc, Number(a), Number(b), Number(params.get('offset') ?? 0), signal)
  ready('compare')
}

async function showDisagreements(
  panel: HTMLElement,
  doc: CompareDoc,
  i: number,
  j: number,
  offset: number,
  signal: AbortSignal,
) {
  const limit = 24
  const [ra, rb] = [doc.refs[i]!, doc.refs[j]!]
  panel.replaceChildren(h('p', { class: 'dim' }, 'Loading…'))
  document.body.dataset.state = 'loading:disagreements'
  try {
    const page = await api<{
      total: number
      manifest: string
      label: string | null
      records: {
        anchor: string
        position: number | null
        a: string
        b: string
        label: string | null
        values: Values
      }[]
    }>(
      `disagreements?${q({ refs: i === j ? ra : `${ra},${rb}`, context: doc.refs.join(','), field: doc.field, offset, limit })}`,
      signal,
    )
    const vs = i === j ? (doc.label ?? 'label') : rb
    const cards = page.records.map((r) =>
      h(
        'div',
        {
          class: 'card',
          'data-testid': 'disagreement',
          'data-anchor': r.anchor,
          'data-position': r.position ?? '',
        },
        h(
          'a',
          {
            class: 'open',
            href: r.position === null ? '#' : link('record', { ref: page.manifest, position: r.position }),
          },
          imageOf(r.values),
          h('div', { class: 'dim' }, `#${r.position} · anchor ${r.anchor}`),
          h(
            'div',
            {},
            h('span', { class: 'dim' }, 'A '),
            h(
              'span',
              {
                class: `chip ${r.label !== null ? (r.a === r.label ? 'good' : 'bad') : ''}`,
                'data-role': 'a',
              },
              r.a,
            ),
          ),
          h(
            'div',
            {},
            h('span', { class: 'dim' }, i === j ? 'label ' : 'B '),
            h(
              'span',
              {
                class: `chip ${r.label !== null ? (r.b === r.label ? 'good' : 'bad') : ''}`,
                'data-role': 'b',
              },
              r.b,
            ),
          ),
          r.label !== null && i !== j
            ? h(
                'div',
                {},
                h('span', { class: 'dim' }, `${page.label} `),
                h('span', { class: 'chip', 'data-role': 'label' }, r.label),
              )
            : null,
        ),
      ),
    )
    panel.replaceChildren(
      h('h3', { 'data-testid': 'pair' }, `${ra} vs ${vs}: ${page.total} records disagree`),
      h(
        'div',
        { class: 'bar' },
        h(
          'button',
          {
            disabled: offset === 0,
            onclick: () => void showDisagreements(panel, doc, i, j, Math.max(0, offset - limit), signal),
          },
          '← previous',
        ),
        h(
          'button',
          {
            disabled: offset + limit >= page.total,
            onclick: () => void showDisagreements(panel, doc, i, j, offset + limit, signal),
          },
          'next →',
        ),
        h('span', { class: 'dim' }, `${offset + 1}–${offset + page.records.length}`),
      ),
      h('div', { class: 'grid' }, ...cards),
    )
    ready('disagreements')
  } catch (error) {
    panel.replaceChildren()
    showError(error)
  }
}

interface InspectDoc extends CommitDoc {
  splits: Record<string, number> | null
  referencedBy: { name: string; kind: string }[]
  history: {
    manifest: string
    summary: string
    timestamp: number
    message: string
    refs: { name: string }[]
    records: number
  }[]
}

/** What trained this tag, and the difference between two refs. */
async function inspectView(params: URLSearchParams, signal: AbortSignal) {
  const { refs } = await allRefs()
  const names = refs.filter((r) => !r.damaged).map((r) => r.name)
  const ref = params.get('ref') ?? names.find((n) => !n.includes('/')) ?? names[0] ?? null
  const a = params.get('a') ?? null
  const b = params.get('b') ?? ref
  const facts = h('div', { class: 'panel', 'data-testid': 'inspect' })
  const diffPanel = h('div', { class: 'panel', 'data-testid': 'diff' })
  const pickA = await refSelect(a ?? names[0] ?? '', () => {}, 'diff-a')
  const pickB = await refSelect(b ?? '', () => {}, 'diff-b')
  main.replaceChildren(
    h('h2', {}, 'Inspect and diff'),
    h(
      'div',
      { class: 'bar' },
      'inspect ',
      await refSelect(ref, (r) => {
        location.hash = link('inspect', { ref: r, a, b })
      }),
    ),
    h(
      'div',
      { class: 'split' },
      facts,
      h(
        'div',
        {},
        h(
          'form',
          {
            class: 'bar',
            onsubmit: (e) => {
              e.preventDefault()
              location.hash = link('inspect', { ref, a: pickA.value, b: pickB.value })
            },
          },
          'diff ',
          pickA,
          ' → ',
          pickB,
          h('button', { type: 'submit', 'data-testid': 'diff-go' }, 'Diff'),
        ),
        diffPanel,
      ),
    ),
  )
  const jobs: Promise<void>[] = []
  if (ref !== null) {
    jobs.push(
      api<InspectDoc>(`inspect?${q({ ref })}`, signal).then((doc) => {
        facts.replaceChildren(
          h(
            'h3',
            {},
            `${doc.ref ? `${doc.ref.name} (${doc.ref.kind})` : short(doc.manifest)}: what this state holds`,
          ),
          commitDetails(doc),
          h('h3', {}, 'splits'),
          doc.splits
            ? h(
                'div',
                { 'data-testid': 'splits' },
                ...Object.entries(doc.splits).map(([k, v]) =>
                  h('span', { class: 'chip', 'data-split': k }, `${k} ${v}`),
                ),
              )
            : h('p', { class: 'dim' }, '(no split field)'),
          h('h3', {}, `history (${doc.depth} states)`),
          h(
            'ol',
            { 'data-testid': 'history' },
            ...doc.history.map((e) =>
              h(
                'li',
                {},
                h('span', { class: 'mono' }, short(e.manifest)),
                ` ${time(e.timestamp)} ${e.summary} · ${e.records} records `,
                e.refs.map((r) => h('span', { class: 'chip' }, r.name)),
                e.message ? h('div', { class: 'dim' }, e.message) : null,
              ),
            ),
          ),
          doc.referencedBy.length > 0
            ? h(
                'p',
                {},
                'built on by: ',
                doc.referencedBy.map((r) => h('span', { class: 'chip' }, r.name)),
              )
            : '',
        )
      }),
    )
  }
  if (a !== null && b !== null) {
    jobs.push(
      api<{
        from: string
        to: string
        same: boolean
        records: { added: number; removed: number }
        buckets: { added: number; removed: number }
        fields: { added: string[]; removed: string[]; changed: string[] }
        layers: { added: string[]; removed: string[]; changed: string[] }
        appended: {
          ref: string
          offset: number
          count: number
          anchors: { runs: [string, number][]; truncated: boolean }
        } | null
        layerValues: Record<string, { from: number; to: number }>
      }>(`diff?${q({ a, b })}`, signal).then((d) => {
        const list = (what: string, part: { added: string[]; removed: string[]; changed: string[] }) =>
          h(
            'tr',
            {},
            h('th', {}, what),
            h(
              'td',
              { 'data-testid': `diff-${what}` },
              ...part.added.map((n) => h('span', { class: 'chip good' }, `+${n}`)),
              ...part.removed.map((n) => h('span', { class: 'chip bad' }, `-${n}`)),
              ...part.changed.map((n) => h('span', { class: 'chip' }, `~${n}`)),
            ),
          )
        diffPanel.replaceChildren(
          h('h3', {}, `${a} → ${b}${d.same ? ': no differences' : ''}`),
          h(
            'table',
            {},
            h(
              'tr',
              {},
              h('th', {}, 'records'),
              h('td', { 'data-testid': 'diff-records' }, `+${d.records.added} −${d.records.removed}`),
            ),
            h('tr', {}, h('th', {}, 'buckets'), h('td', {}, `+${d.buckets.added} −${d.buckets.removed}`)),
            list('fields', d.fields),
            list('layers', d.layers),
            ...Object.entries(d.layerValues).map(([name, v]) =>
              h('tr', {}, h('th', {}, `⧉ ${name}`), h('td', {}, `${v.from} → ${v.to} values`)),
            ),
          ),
          d.appended
            ? h(
                'div',
                {},
                h(
                  'p',
                  {},
                  h(
                    'a',
                    {
                      href: link('records', { ref: b, offset: d.appended.offset }),
                      'data-testid': 'diff-added',
                    },
                    `the ${d.appended.count} records added`,
                  ),
                  ` (positions ${d.appended.offset}–${d.appended.offset + d.appended.count - 1}), by anchor:`,
                ),
                h(
                  'div',
                  { class: 'mono', 'data-testid': 'diff-anchors' },
                  d.appended.anchors.runs
                    .map(([start, n]) => (n === 1 ? start : `${start}–${BigInt(start) + BigInt(n - 1)}`))
                    .join(', '),
                  d.appended.anchors.truncated ? ', …' : '',
                ),
              )
            : '',
        )
      }),
    )
  } else
    diffPanel.append(h('p', { class: 'dim' }, 'Pick two refs: fields, layers and records added or removed.'))
  await Promise.all(jobs)
  ready('inspect')
}

const VIEWS: Record<string, (params: URLSearchParams, signal: AbortSignal) => Promise<void>> = {
  refs: refsView,
  records: recordsView,
  record: recordView,
  similar: similarView,
  compare: compareView,
  inspect: inspectView,
}

let current: AbortController | undefined

async function render() {
  current?.abort()
  const controller = new AbortController()
  current = controller
  const { view, params } = route()
  document.body.dataset.state = `loading:${view}`
  for (const a of document.querySelectorAll<HTMLAnchorElement>('#nav a')) {
    a.classList.toggle('on', a.dataset.view === view || (view === 'record' && a.dataset.view === 'records'))
  }
  const draw = VIEWS[view]
  if (draw === undefined) {
    main.replaceChildren(h('p', {}, `No view '${view}'. `, h('a', { href: '#/refs' }, 'Refs')))
    return
  }
  try {
    await draw(params, controller.signal)
  } catch (error) {
    if (!controller.signal.aborted) showError(error)
  }
}

window.addEventListener('hashchange', () => void render())
void allRefs().then(
  (r) => {
    document.getElementById('backend')!.textContent = r.backend
  },
  () => {},
)
void render()
