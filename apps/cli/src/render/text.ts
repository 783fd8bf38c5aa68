/** Plain-text building blocks: tables, sizes, times, one value per cell. */

/** `1.5 MiB`, `312 B`. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let value = bytes
  let unit = 0
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024
    unit++
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(value < 10 ? 2 : 1)} ${units[unit]}`
}

/**
 * `1,234,567`: a count with thousands separators, as `toLocaleString('en-US')` writes it,
 * without Intl. The first Intl call loads ICU's locale data, about 25 ms of CPU in every
 * process that prints a count (ingest's progress and summary, migrate), issue #13.
 */
export function formatCount(n: number): string {
  if (!Number.isSafeInteger(n)) return n.toLocaleString('en-US')
  const digits = String(Math.abs(n))
  let out = digits.slice(0, digits.length % 3 || 3)
  for (let at = out.length; at < digits.length; at += 3) out += `,${digits.slice(at, at + 3)}`
  return n < 0 ? `-${out}` : out
}

/** ISO time without milliseconds, in UTC. */
export function formatTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z')
}

/**
 * A CID as people read it, like git's short hashes: the first 16 characters
 * (`bafyrei` + 9 of the digest), so that `refs` and `log` fit 80 columns. `--json` and
 * `inspect` give the whole CID, which is what other verbs take.
 */
export function shortCid(cid: string): string {
  return cid.length > 16 ? cid.slice(0, 16) : cid
}

/** Shorten `text` to `max` characters, cutting in the middle (`sweep/lp…bs128`). */
export function truncateMiddle(text: string, max: number): string {
  if (text.length <= max) return text
  if (max <= 1) return text.slice(0, Math.max(0, max))
  const keep = max - 1
  const head = Math.ceil(keep / 2)
  return `${text.slice(0, head)}…${text.slice(text.length - (keep - head))}`
}

/** Shorten `text` to `max` characters, cutting at the end. */
export function truncateEnd(text: string, max: number): string {
  if (text.length <= max) return text
  return max <= 1 ? text.slice(0, Math.max(0, max)) : `${text.slice(0, max - 1)}…`
}

export interface TableOptions {
  /** Columns aligned right (numbers). */
  right?: number[]
  /** Style the header row (bold on a colour terminal). */
  header?: (text: string) => string
}

/** Left-aligned columns separated by two spaces; the first row is the header. */
export function table(rows: string[][], options: TableOptions = {}): string[] {
  const widths: number[] = []
  for (const row of rows) {
    for (const [i, cell] of row.entries()) widths[i] = Math.max(widths[i] ?? 0, cell.length)
  }
  return rows.map((row, r) => {
    const line = row
      .map((cell, i) => {
        const last = i === row.length - 1
        const padded = options.right?.includes(i)
          ? cell.padStart(widths[i]!)
          : last
            ? cell
            : cell.padEnd(widths[i]!)
        return padded
      })
      .join('  ')
    return r === 0 && options.header ? options.header(line) : line
  })
}
