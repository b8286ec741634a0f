package store

import (
	"encoding/binary"

	"github.com/kimura-ledger/kimura/internal/chain"
)

var (
	blockPrefix   = []byte("block:")
	msgPrefix     = []byte("msg:")
	pendingPrefix = []byte("pending:")

	keyLastHeight  = []byte("meta:last_height")
	keyLastHash    = []byte("meta:last_hash")
	keyGenesisHash = []byte("meta:genesis_hash")
	keyProducer    = []byte("meta:producer")
)

func blockKey(height uint64) []byte {
	return binary.BigEndian.AppendUint64(append(make([]byte, 0, len(blockPrefix)+8), blockPrefix...), height)
}

func msgKey(id chain.Hash) []byte {
	return append(append(make([]byte, 0, len(msgPrefix)+chain.HashSize), msgPrefix...), id[:]...)
}

func pendingKey(seq uint64) []byte {
	return binary.BigEndian.AppendUint64(append(make([]byte, 0, len(pendingPrefix)+8), pendingPrefix...), seq)
}

// prefixEnd returns the first key after every key that starts with prefix.
func prefixEnd(prefix []byte) []byte {
	end := append([]byte(nil), prefix...)
	end[len(end)-1]++ // the prefixes end in ':', never 0xff
	return end
}
