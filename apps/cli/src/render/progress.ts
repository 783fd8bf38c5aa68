/** Progress of a long job: counts, rate and ETA, as one plain line or the Ink bar's parts. */
import { formatBytes, formatCount } from './text.js'

export interface ProgressState {
  /** What is being done, e.g. `ingest imagenet-100`. */
  title: string
  done: number
  total: number
  bytes: number
  /** Milliseconds since the work started. */
  elapsedMs: number
  /** The last thing finished, e.g. `train-00003-of-00017.parquet rows 0-1024`. */
  last: string
  /** A phase after the records, e.g. `training dreamdb.ivf-cosine`. */
  phase?: string
}

export interface ProgressFigures {
  percent: number
  /** Records per second, or undefined before any. */
  rate: number | undefined
  /** Bytes per second. */
  byteRate: number | undefined
  /** Seconds left at the current rate. */
  etaSeconds: number | undefined
}

export function figures(state: ProgressState): ProgressFigures {
  const seconds = state.elapsedMs / 1000
  const rate = state.done > 0 && seconds > 0 ? state.done / seconds : undefined
  return {
    percent: state.total > 0 ? Math.floor((100 * state.done) / state.total) : 100,
    rate,
    byteRate: rate !== undefined ? state.bytes / seconds : undefined,
    etaSeconds: rate !== undefined ? (state.total - state.done) / rate : undefined,
  }
}

/** `1:05`, `1:02:03`, `?` when unknown. */
export function formatDuration(seconds: number | undefined): string {
  if (seconds === undefined || !Number.isFinite(seconds)) return '?'
  const s = Math.max(0, Math.round(seconds))
  const h = Math.floor(s / 3600)
  const m = Math.floor((s % 3600) / 60)
  const pad = (n: number) => String(n).padStart(2, '0')
  return h > 0 ? `${h}:${pad(m)}:${pad(s % 60)}` : `${m}:${pad(s % 60)}`
}

const count = formatCount

/** `1,200/5,000 records  812 rec/s  12.5 MiB/s  ETA 0:04` */
export function progressText(state: ProgressState): string {
  const f = figures(state)
  const parts = [`${count(state.done)}/${count(state.total)} records`]
  if (f.rate !== undefined) {
    parts.push(`${count(Math.round(f.rate))} rec/s`, `${formatBytes(f.byteRate ?? 0)}/s`)
  }
  parts.push(
    state.done >= state.total
      ? `in ${formatDuration(state.elapsedMs / 1000)}`
      : `ETA ${formatDuration(f.etaSeconds)}`,
  )
  return parts.join('  ')
}

/** One plain line for logs: `ingest x: 45% 540/1,200 records ... (last chunk)`. */
export function progressLine(state: ProgressState): string {
  const f = figures(state)
  if (state.phase !== undefined) return `${state.title}: ${state.phase}`
  return `${state.title}: ${String(f.percent).padStart(3)}% ${progressText(state)}${state.last ? `  (${state.last})` : ''}`
}

/** A bar of `width` cells: `█` done, `░` to do. */
export function bar(done: number, total: number, width: number): string {
  const cells = Math.max(1, width)
  const full = total > 0 ? Math.min(cells, Math.floor((done / total) * cells)) : cells
  return `${'█'.repeat(full)}${'░'.repeat(cells - full)}`
}
