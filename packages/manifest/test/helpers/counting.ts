import type { Store } from '@dreamdb/cas'

/**
 * The store seen through a counter: `calls` lists every store call a block makes, by
 * method name, in order (each is one backend request; S3: one HTTP call).
 */
export function counting(store: Store) {
  const calls: string[] = []
  const proxy = new Proxy(store, {
    get(target, key, receiver) {
      const value = Reflect.get(target, key, receiver)
      if (typeof value !== 'function' || key === 'close') return value
      return (...args: unknown[]) => {
        calls.push(String(key))
        return value.apply(target, args)
      }
    },
  })
  return { store: proxy as Store, calls }
}
