/// <reference lib="dom" />
/** The app's few helpers: elements, the API, the hash route. No framework: plain DOM. */

type Child = Node | string | number | null | undefined | false
type Attrs = Record<string, string | number | boolean | null | undefined | ((event: Event) => void)>

/** An element: attributes (`on…` are listeners), then children (text is escaped by the DOM). */
export function h(tag: string, attrs: Attrs = {}, ...children: (Child | Child[])[]): HTMLElement {
  const el = document.createElement(tag)
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue
    if (typeof v === 'function') el.addEventListener(k.slice(2), v)
    else el.setAttribute(k, v === true ? '' : String(v))
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue
    el.append(c instanceof Node ? c : String(c))
  }
  return el
}

const SVG = 'http://www.w3.org/2000/svg'
export function s(
  tag: string,
  attrs: Record<string, string | number> = {},
  ...children: (Node | string)[]
): SVGElement {
  const el = document.createElementNS(SVG, tag)
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v))
  el.append(...children)
  return el
}

/** An API error: the server's dreamdb.error/1 document. */
export class ApiError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly hint?: string,
  ) {
    super(message)
  }
}

/** GET /api/<path> as JSON; aborted when the view changes. */
export async function api<T = Record<string, unknown>>(path: string, signal?: AbortSignal): Promise<T> {
  const res = await fetch(`/api/${path}`, signal ? { signal } : {})
  const body = (await res.json()) as { error?: { code: string; message: string; hint?: string } }
  if (!res.ok || body.error) {
    throw new ApiError(
      body.error?.code ?? `HTTP ${res.status}`,
      body.error?.message ?? res.statusText,
      body.error?.hint,
    )
  }
  return body as T
}

export const q = (params: Record<string, string | number | null | undefined>): string => {
  const out = new URLSearchParams()
  for (const [k, v] of Object.entries(params))
    if (v !== null && v !== undefined && v !== '') out.set(k, String(v))
  return out.toString()
}

export const short = (cid: string): string => (cid.length > 16 ? `${cid.slice(0, 6)}…${cid.slice(-6)}` : cid)

export function bytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let i = 0
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024
    i++
  }
  return `${i === 0 ? n : n.toFixed(1)} ${units[i]}`
}

export const pct = (x: number | null | undefined): string =>
  x === null || x === undefined ? '–' : `${(100 * x).toFixed(1)}%`

export const time = (ms: number): string => new Date(ms).toISOString().replace('T', ' ').slice(0, 19)

/** The route: `#/view?a=1` → view and params. */
export function route(): { view: string; params: URLSearchParams } {
  const raw = location.hash.replace(/^#\/?/, '')
  const at = raw.indexOf('?')
  return {
    view: (at < 0 ? raw : raw.slice(0, at)) || 'refs',
    params: new URLSearchParams(at < 0 ? '' : raw.slice(at + 1)),
  }
}

export const link = (
  view: string,
  params: Record<string, string | number | null | undefined> = {},
): string => {
  const query = q(params)
  return `#/${view}${query ? `?${query}` : ''}`
}
