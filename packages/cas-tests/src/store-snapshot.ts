import { readdir, stat } from 'node:fs/promises'
import { join, relative } from 'node:path'
import { ListObjectsV2Command } from '@aws-sdk/client-s3'
import type { Store } from '@dreamdb/cas'
import { adminClient } from './minio.js'

/** Where a store's raw contents can be listed beyond its own API. */
export interface RawLocation {
  /** A folder store's root: every file under it is listed (temp files and locks too). */
  folder?: string
  /** An S3 store's bucket on a test server: every key in it is listed. */
  s3?: { endpoint: string; bucket: string }
}

/**
 * Everything a store holds, as sorted lines: its objects (with sizes), its refs (with
 * generation and version, which change on every write), and, where given, every file of
 * its folder or every key of its bucket (with size and ETag), so that temp files, locks
 * and stray uploads show too. Two snapshots are equal when nothing was written between
 * them. Use it around a call that must be refused before its first write.
 */
export async function snapshotStore(store: Store, raw: RawLocation = {}): Promise<string[]> {
  const lines: string[] = []
  for await (const o of store.list()) lines.push(`object ${o.cid} ${o.size}`)
  for await (const name of store.listRefs('')) {
    const entry = await store.readRef(name)
    lines.push(`ref ${name} ${entry === undefined ? 'gone' : `gen ${entry.generation} ${entry.version}`}`)
  }
  if (raw.folder !== undefined) {
    for (const path of await filesUnder(raw.folder)) {
      const info = await stat(path)
      lines.push(`file ${relative(raw.folder, path)} ${info.size} ${info.mtimeMs}`)
    }
  }
  if (raw.s3 !== undefined) {
    const client = adminClient(raw.s3.endpoint)
    try {
      let token: string | undefined
      do {
        const page = await client.send(
          new ListObjectsV2Command({ Bucket: raw.s3.bucket, ContinuationToken: token }),
        )
        for (const o of page.Contents ?? []) lines.push(`key ${o.Key} ${o.Size} ${o.ETag}`)
        token = page.IsTruncated ? page.NextContinuationToken : undefined
      } while (token !== undefined)
    } finally {
      client.destroy()
    }
  }
  return lines.sort()
}

async function filesUnder(root: string): Promise<string[]> {
  const out: string[] = []
  for (const entry of await readdir(root, { withFileTypes: true })) {
    const path = join(root, entry.name)
    if (entry.isDirectory()) out.push(...(await filesUnder(path)))
    else out.push(path)
  }
  return out
}
