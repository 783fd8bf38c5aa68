/** The resolve hook of trace-sdk.ts. */
import { appendFileSync } from 'node:fs'

type NextResolve = (specifier: string, context: unknown) => Promise<{ url: string }>

export async function resolve(specifier: string, context: unknown, nextResolve: NextResolve) {
  const resolved = await nextResolve(specifier, context)
  const trace = process.env.DREAMDB_TRACE_SDK
  if (trace && /\/node_modules\/@(aws-sdk|smithy)\//.test(resolved.url)) {
    appendFileSync(trace, `${resolved.url}\n`)
  }
  return resolved
}
