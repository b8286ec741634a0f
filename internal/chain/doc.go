// Package chain is Kimura's pure core: messages, block headers and blocks,
// their canonical binary encodings, hashing, signatures, Merkle roots and
// inclusion proofs, and the stateless rules a block must meet to extend a
// chain. It does no I/O and imports nothing else of the project, so every rule
// here can be tested without a database or a network.
//
// All hashes are BLAKE3-256. All integers in encodings are big-endian.
package chain
