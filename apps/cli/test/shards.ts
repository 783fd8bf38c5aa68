/** The MNIST shard fixtures of @dreamdb/ingest's tests, for the CLI tests that ingest or export shards. */
export * from '../../../packages/ingest/test/digits.js'
