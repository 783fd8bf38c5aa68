/**
 * The agreement matrix as lines of text that fit a terminal width: a pure function, so the
 * Ink view, the plain-text output and the tests all share one layout.
 *
 * - Up to as many refs as fit (19 at 80 columns, 15 with heat glyphs), a matrix: columns
 *   keyed A, B, C…, rows keyed the same with the ref's distinctive part, cells in percent
 *   with a heat glyph, then a legend mapping each key to the full ref and its count.
 * - Beyond that, the most and least agreeing pairs, each with both refs named.
 */

export interface MatrixInput {
  field: string
  refs: string[]
  /** `agreement[i][j]`: share of shared records with equal values (0..1). */
  agreement: number[][]
  /** `overlap[i][j]`: records where both refs have a value. */
  overlap: number[][]
  /** Values per ref. */
  counts: number[]
}

/** 0: under 50%, 1: 50-75%, 2: 75-90%, 3: 90-97%, 4: 97% or more. */
export type HeatLevel = 0 | 1 | 2 | 3 | 4

export const HEAT_GLYPHS = ['·', '░', '▒', '▓', '█'] as const
export const HEAT_BOUNDS = [0.5, 0.75, 0.9, 0.97] as const

export interface Segment {
  text: string
  /** A heat cell: the renderer may colour it by level. */
  level?: HeatLevel
  /** Headers and keys. */
  strong?: boolean
  /** Secondary text (counts, the diagonal). */
  dim?: boolean
}

export type Line = Segment[]

export interface MatrixLayout {
  mode: 'matrix' | 'pairs'
  width: number
  lines: Line[]
}

export interface LayoutOptions {
  /** Terminal columns. @default 80 */
  width?: number
  /** Pairs listed at each end in the pairs view. @default 5 */
  pairs?: number
}

export function heatLevel(share: number): HeatLevel {
  let level = 0
  while (level < HEAT_BOUNDS.length && share >= HEAT_BOUNDS[level]!) level++
  return level as HeatLevel
}

/** Percent rounded down, so that only full agreement shows 100. */
export function percent(share: number): string {
  return share >= 1 ? '100' : String(Math.floor(share * 100))
}

/** A, B, …, Z, AA, AB, … */
export function keyOf(index: number): string {
  let key = ''
  let n = index
  do {
    key = String.fromCharCode(65 + (n % 26)) + key
    n = Math.floor(n / 26) - 1
  } while (n >= 0)
  return key
}

// Not '.', which sits inside numbers (lr0.001 vs lr0.01).
const SEPARATOR = /[/_-]/

/**
 * The distinctive part of each ref: the longest common prefix and suffix that end at a
 * separator (`/`, `-`, `_`) are removed, unless that would leave a ref empty.
 */
export function distinctiveNames(refs: string[]): string[] {
  if (refs.length < 2) return [...refs]
  let prefix = refs[0]!
  for (const ref of refs) while (!ref.startsWith(prefix)) prefix = prefix.slice(0, -1)
  let cut = prefix.length
  while (cut > 0 && !SEPARATOR.test(prefix[cut - 1]!)) cut--
  let suffix = refs[0]!
  for (const ref of refs) while (!ref.endsWith(suffix)) suffix = suffix.slice(1)
  let tail = suffix.length
  while (tail > 0 && !SEPARATOR.test(suffix[suffix.length - tail]!)) tail--
  const names = refs.map((ref) => ref.slice(cut, ref.length - tail))
  if (names.some((n) => n === '') || new Set(names).size !== refs.length) {
    const prefixOnly = refs.map((ref) => ref.slice(cut))
    return prefixOnly.some((n) => n === '') ? [...refs] : prefixOnly
  }
  return names
}

function middle(text: string, max: number): string {
  if (text.length <= max) return text
  if (max <= 1) return text.slice(0, Math.max(0, max))
  const keep = max - 1
  const head = Math.ceil(keep / 2)
  return `${text.slice(0, head)}…${text.slice(text.length - (keep - head))}`
}

/** Lay out the matrix for `width` columns; every line's text is at most `width` long. */
export function layoutAgreement(input: MatrixInput, options: LayoutOptions = {}): MatrixLayout {
  const width = Math.max(40, options.width ?? 80)
  const n = input.refs.length
  const keyWidth = keyOf(Math.max(0, n - 1)).length
  // A cell is ' ' + three digits + a heat glyph, or ' ' + three digits when space is short.
  for (const cell of [5, 4]) {
    if (keyWidth + 1 + n * cell <= width) return matrixLayout(input, width, cell, keyWidth)
  }
  return pairsLayout(input, width, options.pairs ?? 5)
}

/** Break `text` into lines of at most `width` at spaces (a word longer than a line is cut in its middle). */
export function wrapWords(text: string, width: number): string[] {
  const lines: string[] = []
  let line = ''
  for (const word of text.split(/\s+/).filter((w) => w !== '')) {
    const piece = middle(word, width)
    if (line === '') line = piece
    else if (line.length + 1 + piece.length <= width) line += ` ${piece}`
    else {
      lines.push(line)
      line = piece
    }
  }
  if (line !== '') lines.push(line)
  return lines
}

/** Sentences wrap at words rather than losing their middle. */
const prose = (text: string, width: number, style: Omit<Segment, 'text'>): Line[] =>
  wrapWords(text, width).map((t) => [{ text: t, ...style }])

function title(input: MatrixInput, width: number): Line[] {
  return [
    [{ text: middle(`'${input.field}' agreement across ${input.refs.length} refs`, width), strong: true }],
    ...prose('cells: % of the records both refs have a value for that agree', width, { dim: true }),
  ]
}

function legendLine(width: number): Line {
  const parts = ['<50', '50-75', '75-90', '90-97', '≥97']
  const line: Line = [{ text: 'heat ', dim: true }]
  parts.forEach((label, level) => {
    line.push({ text: HEAT_GLYPHS[level]!, level: level as HeatLevel })
    line.push({ text: ` ${label}${level < parts.length - 1 ? '  ' : ''}`, dim: true })
  })
  line.push({ text: '   — same ref  - none shared', dim: true })
  return fit(line, width)
}

/**
 * Drop trailing segments so the line fits: whole segments, so no word is cut (only a first
 * segment wider than the line is shortened).
 */
function fit(line: Line, width: number): Line {
  const out: Line = []
  let used = 0
  for (const segment of line) {
    if (used + segment.text.length <= width) {
      out.push(segment)
      used += segment.text.length
    } else {
      if (out.length === 0) out.push({ ...segment, text: middle(segment.text, width) })
      break
    }
  }
  return out
}

function cellOf(input: MatrixInput, i: number, j: number, cell: number): Segment {
  const glyph = cell === 5
  if (i === j) return { text: ` ${'—'.padStart(3)}${glyph ? ' ' : ''}`, dim: true }
  if ((input.overlap[i]?.[j] ?? 0) === 0) return { text: ` ${'-'.padStart(3)}${glyph ? ' ' : ''}`, dim: true }
  const share = input.agreement[i]?.[j] ?? 0
  const level = heatLevel(share)
  return { text: ` ${percent(share).padStart(3)}${glyph ? HEAT_GLYPHS[level] : ''}`, level }
}

function matrixLayout(input: MatrixInput, width: number, cell: number, keyWidth: number): MatrixLayout {
  const n = input.refs.length
  const names = distinctiveNames(input.refs)
  const labelRoom = width - n * cell
  // Row labels: the key, then the distinctive name when there is room for a useful part of it.
  const nameRoom = labelRoom - keyWidth - 2
  const longest = Math.max(0, ...names.map((s) => s.length))
  const nameWidth = nameRoom >= 6 ? Math.min(nameRoom, longest) : 0
  const labelWidth = keyWidth + (nameWidth > 0 ? 1 + nameWidth : 0) + 1
  const lines: Line[] = title(input, width)
  lines.push([
    { text: ' '.repeat(labelWidth) },
    ...input.refs.map((_, j) => ({ text: ` ${keyOf(j).padStart(3)}${cell === 5 ? ' ' : ''}`, strong: true })),
  ])
  for (let i = 0; i < n; i++) {
    const label: Segment[] = [{ text: keyOf(i).padEnd(keyWidth), strong: true }]
    if (nameWidth > 0) label.push({ text: ` ${middle(names[i]!, nameWidth).padEnd(nameWidth)}` })
    label.push({ text: ' ' })
    lines.push([...label, ...input.refs.map((_, j) => cellOf(input, i, j, cell))])
  }
  lines.push([])
  lines.push(legendLine(width))
  const countWidth = Math.max(...input.counts.map((c) => String(c).length), 1)
  for (let i = 0; i < n; i++) {
    const count = `${String(input.counts[i] ?? 0).padStart(countWidth)} values  `
    const prefix = `${keyOf(i).padEnd(keyWidth)}  `
    lines.push([
      { text: prefix, strong: true },
      { text: count, dim: true },
      { text: middle(input.refs[i]!, width - prefix.length - count.length) },
    ])
  }
  return { mode: 'matrix', width, lines }
}

interface Pair {
  i: number
  j: number
  share: number
  overlap: number
}

function pairsLayout(input: MatrixInput, width: number, k: number): MatrixLayout {
  const n = input.refs.length
  const pairs: Pair[] = []
  let disjoint = 0
  for (let i = 0; i < n; i++) {
    for (let j = i + 1; j < n; j++) {
      const overlap = input.overlap[i]?.[j] ?? 0
      if (overlap === 0) disjoint++
      else pairs.push({ i, j, share: input.agreement[i]?.[j] ?? 0, overlap })
    }
  }
  // Ties break by ref order, so the output is stable.
  pairs.sort((a, b) => b.share - a.share || a.i - b.i || a.j - b.j)
  const lines: Line[] = title(input, width)
  lines.push(
    ...prose(`too many refs for a ${width}-column matrix; extremes follow (--json has every pair)`, width, {
      dim: true,
    }),
  )
  const showAll = pairs.length <= 2 * k
  const sections: [string, Pair[]][] = showAll
    ? [['pairs, most agreeing first', pairs]]
    : [
        ['most agreeing pairs', pairs.slice(0, k)],
        ['least agreeing pairs', pairs.slice(-k).reverse()],
      ]
  for (const [heading, list] of sections) {
    lines.push([])
    lines.push([{ text: heading, strong: true }])
    for (const pair of list) {
      const level = heatLevel(pair.share)
      const head = `  ${percent(pair.share).padStart(3)}% `
      const tail = `  (${pair.overlap} shared)`
      const room = width - head.length - 2 - tail.length - 3
      const each = Math.max(4, Math.floor(room / 2))
      lines.push(
        fit(
          [
            { text: head },
            { text: HEAT_GLYPHS[level], level },
            { text: ' ' },
            { text: middle(input.refs[pair.i]!, each) },
            { text: ' ~ ', dim: true },
            { text: middle(input.refs[pair.j]!, each) },
            { text: tail, dim: true },
          ],
          width,
        ),
      )
    }
  }
  if (disjoint > 0) {
    lines.push([])
    lines.push([{ text: `${disjoint} pairs share no records`, dim: true }])
  }
  lines.push([])
  lines.push(legendLine(width))
  return { mode: 'pairs', width, lines }
}

/** The layout as plain text lines (no colour). */
export function plainLines(layout: MatrixLayout): string[] {
  return layout.lines.map((line) =>
    line
      .map((s) => s.text)
      .join('')
      .trimEnd(),
  )
}
