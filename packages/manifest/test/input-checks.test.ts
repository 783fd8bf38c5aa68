import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { openStore } from '@dreamdb/cas'
import { rejection, snapshotStore } from '@dreamdb/cas-tests'
import { describe, expect, it } from 'vitest'
import { assertUserRefName, checkLayer, Repository } from '../src/index.js'

describe('user ref names follow git check-ref-format', () => {
  const refused: [string, RegExp][] = [
    ['main.', /ends in "\."/],
    ['a./b', /ends in "\."/],
    ['a..b', /"\.\."/],
    ['.hidden', /starts with "\."/],
    ['a/.b', /starts with "\."/],
    ['x.lock', /\.lock/],
    ['a/x.lock/b', /\.lock/],
    ['a@{1}', /"@\{"/],
    ['@', /"@" alone/],
    ['a b', /a space/],
    ['a\tb', /"\\u0009"/],
    ['a~1', /"~"/],
    ['a^', /"\^"/],
    ['a:b', /":"/],
    ['a?', /"\?"/],
    ['a*', /"\*"/],
    ['a[b', /"\["/],
    ['a\\b', /"\\"/],
    ['a\u007f', /"\\u007f"/],
    ['/a', /empty path segment/],
    ['a/', /empty path segment/],
    ['a//b', /empty path segment/],
    ['', /empty/],
    ['_dreamdb/x', /reserved/],
    ['-a', /must start with a letter/],
    ['x.ref', /reserved/],
    ['é', /must start with a letter/],
    ['a'.repeat(201), /201 characters long; the limit is 200/],
    [`${'a'.repeat(100)}/${'b'.repeat(100)}`, /201 characters long/],
  ]
  it.each(refused)('refuses %j', (name, reason) => {
    let error: unknown
    try {
      assertUserRefName(name)
    } catch (e) {
      error = e
    }
    expect(error).toMatchObject({ code: 'ERR_MANIFEST_INVALID_REF_NAME', refName: name })
    expect((error as Error).message).toMatch(reason)
  })

  it.each([
    'main',
    'a.b',
    'sweep/lr0.01',
    'v1.0-rc_2',
    'a'.repeat(200),
    `${'a'.repeat(99)}/${'b'.repeat(100)}`,
  ])('accepts %j', (name) => {
    expect(() => assertUserRefName(name)).not.toThrow()
  })

  it('a non-string is a typed error, not a TypeError', () => {
    expect(() => assertUserRefName(42 as unknown as string)).toThrow(
      expect.objectContaining({ code: 'ERR_MANIFEST_INVALID_REF_NAME' }),
    )
  })
})

describe('layer checks, before anything is written', () => {
  it('checkLayer refuses what a layer commit would refuse, naming the value', () => {
    const head = {
      schema: { fields: [{ name: 'label', family: 'scalar' as const, kind: 'categorical' as const }] },
      layers: [
        {
          name: 'pred',
          parent: 'label',
          field: { name: 'pred', family: 'scalar' as const, kind: 'int' as const },
        },
      ],
    }
    const cases: [unknown, RegExp][] = [
      [
        { name: 'p', parent: 'label', field: { family: 'scalar', kind: 'label' } },
        /kind "label".*categorical, string, int/,
      ],
      [
        { name: 'label', parent: 'label', field: { family: 'scalar', kind: 'int' } },
        /a base field already has this name/,
      ],
      [
        { name: 'pred', parent: 'label', field: { family: 'scalar', kind: 'bool' } },
        /kind 'int', not parent 'label' and kind 'bool'/,
      ],
      [{ name: 'v', parent: 'label', field: { family: 'embedding', dim: 0 } }, /dim 0/],
      [
        { name: 'v', parent: 'label', field: { family: 'embedding', dim: 2, metric: 'manhattan' } },
        /metric "manhattan"/,
      ],
      [{ name: '9lives', parent: 'label', field: { family: 'scalar', kind: 'int' } }, /field name "9lives"/],
      [{ name: 'p', parent: 'nope', field: { family: 'scalar', kind: 'int' } }, /parent field 'nope'/],
      [{ name: 'p', parent: 'label', field: null }, /a layer is/],
    ]
    for (const [request, reason] of cases) {
      let error: unknown
      try {
        checkLayer(head, request as Parameters<typeof checkLayer>[1])
      } catch (e) {
        error = e
      }
      expect(error, JSON.stringify(request)).toMatchObject({ code: 'ERR_MANIFEST_INVALID_SCHEMA' })
      expect((error as Error).message).toMatch(reason)
    }
  })
})

describe('createDataset of a taken name', () => {
  it('is refused before its empty manifest is written: the folder store is unchanged', async () => {
    const folder = await mkdtemp(join(tmpdir(), 'dreamdb-create-taken-'))
    const store = await openStore(folder)
    try {
      const repo = new Repository(store)
      await repo.createDataset('corpus', {
        schema: { fields: [{ name: 'label', family: 'scalar', kind: 'categorical' }] },
      })
      const before = await snapshotStore(store, { folder })
      // Another schema and message: its empty manifest would be a new object.
      const error = await rejection(
        repo.createDataset('corpus', {
          schema: { fields: [{ name: 'text', family: 'scalar', kind: 'string' }] },
          message: 'a second create',
        }),
      )
      expect(error).toMatchObject({ code: 'ERR_MANIFEST_REF_EXISTS' })
      expect(await snapshotStore(store, { folder })).toEqual(before)
    } finally {
      await store.close()
      await rm(folder, { recursive: true, force: true })
    }
  })
})
