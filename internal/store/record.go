package store

import (
	"encoding/binary"
	"hash/crc32"
)

// A stored block value is the block record (chain.Block.Encode, the form
// that gossip and GET /blocks carry too) followed by the CRC-32C of the
// record, 4 bytes big-endian. The header and signature are bound to the
// block hash; the checksum covers every byte, the entries included, so the
// startup check catches any damaged byte without rebuilding each block's
// message root (a quarter of its cost with 10-message blocks). Entries were
// checked against the root before they were stored, by the leader that
// sealed them or the peer that accepted them. CRC-32C is what storage
// engines use for the same job (Pebble checksums its own blocks with it),
// and it costs about 0.1 µs per record.
const checksumSize = 4

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// storedBlock returns the stored value of the block record rec.
func storedBlock(rec []byte) []byte {
	v := make([]byte, 0, len(rec)+checksumSize)
	v = append(v, rec...)
	return binary.BigEndian.AppendUint32(v, crc32.Checksum(rec, castagnoli))
}

// openStoredBlock checks the stored value v of the block at height and
// returns its record (a subslice of v).
func openStoredBlock(height uint64, v []byte) ([]byte, *CorruptionError) {
	if len(v) < checksumSize {
		return nil, corrupt(height, "block value of %d bytes has no checksum", len(v))
	}
	rec, sum := v[:len(v)-checksumSize], binary.BigEndian.Uint32(v[len(v)-checksumSize:])
	if got := crc32.Checksum(rec, castagnoli); got != sum {
		return nil, corrupt(height, "block record checksum %08x does not match the stored %08x", got, sum)
	}
	return rec, nil
}
