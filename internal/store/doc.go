// Package store is Kimura's only user of Pebble. It owns the key schema, the
// one atomic write through which blocks, confirmed messages, the removal of
// pending messages and the chain metadata change together, the leader's
// durable pending queue, and the integrity scan that a node runs before it
// serves anything.
//
// # Key schema
//
//	block:<height, 8 bytes BE>   chain.Block record encoding || CRC-32C of it (4 BE)
//	msg:<message id, 32 bytes>   confirmed message: height (8 BE) || index (4 BE) || chain.Message encoding
//	pending:<seq, 8 bytes BE>    the leader's pending message: chain.Message encoding (timestamp stamped)
//	meta:last_height             8 bytes BE
//	meta:last_hash               32 bytes
//	meta:genesis_hash            32 bytes
//	meta:producer                32 bytes: the key every block after genesis is signed by
//
// # Durability
//
// Every write that a caller acknowledges to anyone is applied with
// pebble.Sync; concurrent synced writes share WAL fsyncs through Pebble's
// commit pipeline (group commit). The only unsynced write is PutMessage, a
// peer's cache of a confirmed message it can fetch again.
//
// # Uniqueness
//
// HasMessages answers whether message IDs are confirmed. On the leader
// (FilterMessageIDs) an in-memory Bloom filter of every stored block's
// message IDs, filled by the integrity scan and by each commit, rules out
// nearly every new ID without reading the database.
package store
