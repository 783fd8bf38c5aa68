/**
 * The conditional-write probe (a `_probe/...` object created, created again and updated
 * before a store's first ref write) against a real MinIO behind a fault-injecting proxy
 * that loses the probe's answers after the server applied them. The probe is harmless to
 * resend: the store retries it with its backoff, and a probe object its own lost attempt
 * created does not make it fail.
 */
import { freshBucket, minioEndpoint, type ProxiedRequest, startFaultProxy } from '@dreamdb/cas-tests'
import { describe, expect, it } from 'vitest'
import { openStore } from '../src/open.js'

const endpoint = minioEndpoint()
const encode = (text: string): Uint8Array => new TextEncoder().encode(text)
const isProbe = (r: ProxiedRequest): boolean => r.path.split('?')[0]!.includes('/_probe/')

/** A store behind a proxy that loses the answers of the probe writes `drop` picks. */
async function lossyProbe(drop: (r: ProxiedRequest, index: number) => boolean) {
  const bucket = await freshBucket(endpoint!)
  let probes = 0
  const proxy = await startFaultProxy({
    target: endpoint!,
    dropResponseOf: (r) => r.method === 'PUT' && isProbe(r) && drop(r, probes++),
  })
  const store = await openStore(`${proxy.url}/${bucket}`, { timeoutMs: 5_000, attempts: 3 })
  return { proxy, store }
}

describe.runIf(endpoint !== undefined)('the conditional-write probe when its answers are lost', () => {
  it('the creating write lands but its answer is lost: retried, the existing probe accepted, the ref written', async () => {
    const { proxy, store } = await lossyProbe((_r, index) => index === 0)
    try {
      const ref = await store.createRef('main', encode('v1'))
      expect(ref.generation).toBe(1)
      expect(proxy.dropped.map((d) => [d.method, d.status])).toEqual([['PUT', 200]])
      expect(new TextDecoder().decode((await store.readRef('main'))!.value)).toBe('v1')
    } finally {
      await store.close()
      await proxy.close()
    }
  }, 60_000)

  it('every probe write loses its first answer: each is retried and the ref still lands', async () => {
    // Probe PUTs in order: create (dropped), its retry; create again (dropped), its retry;
    // the wrong-If-Match update (dropped), its retry.
    const { proxy, store } = await lossyProbe((_r, index) => index % 2 === 0)
    try {
      await store.createRef('main', encode('v1'))
      expect(proxy.dropped.map((d) => d.status)).toEqual([200, 412, 412])
      expect(new TextDecoder().decode((await store.readRef('main'))!.value)).toBe('v1')
    } finally {
      await store.close()
      await proxy.close()
    }
  }, 60_000)

  it('a probe whose answers are always lost fails typed after the configured attempts', async () => {
    const { proxy, store } = await lossyProbe(() => true)
    try {
      const error = await store.createRef('main', encode('v1')).then(
        () => undefined,
        (e: Error & Record<string, unknown>) => e,
      )
      expect(error?.code).toBe('ERR_CAS_UNREACHABLE')
      expect(error?.message).toContain('3 attempts')
      expect(proxy.dropped.length).toBe(3)
    } finally {
      await store.close()
      await proxy.close()
    }
  }, 60_000)
})
