package store

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"testing"

	"github.com/kimura-ledger/kimura/internal/chain"
)

func benchStore(b *testing.B) *Store {
	b.Helper()
	s, err := Open(b.TempDir(), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	return s
}

func benchMsgs(n int, nonce0 uint64) []chain.Message {
	_, key, _ := ed25519.GenerateKey(nil)
	content := string(make([]byte, 100))
	msgs := make([]chain.Message, n)
	for i := range msgs {
		msgs[i] = chain.SignMessage(key, nonce0+uint64(i), content)
		msgs[i].Timestamp = 1
	}
	return msgs
}

// BenchmarkCommitBlock10000 is the leader's atomic, synced commit of a
// 10,000-message block with the removal of its pending entries.
func BenchmarkCommitBlock10000(b *testing.B) {
	s := benchStore(b)
	_, key, _ := ed25519.GenerateKey(nil)
	const n = 10000
	for i := uint64(0); b.Loop(); i++ {
		b.StopTimer()
		msgs := benchMsgs(n, i*n)
		ps := make([]Pending, n)
		seqs := make([]uint64, n)
		conf := make([]Confirmed, n)
		tip := s.Tip()
		blk := chain.Seal(&tip.Header, msgs, 1, key)
		for j := range msgs {
			ps[j] = Pending{Seq: i*n + uint64(j), Message: msgs[j]}
			seqs[j] = ps[j].Seq
			conf[j] = Confirmed{Message: msgs[j], Height: blk.Height, Index: uint32(j)}
		}
		if err := s.AddPending(ps); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if err := s.Commit(Commit{Blocks: []*chain.Block{blk}, Messages: conf, Pending: seqs}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAddPending is one synced pending write of one message.
func BenchmarkAddPending(b *testing.B) {
	s := benchStore(b)
	msgs := benchMsgs(1, 0)
	for i := uint64(0); b.Loop(); i++ {
		if err := s.AddPending([]Pending{{Seq: i, Message: msgs[0]}}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyChain is the integrity scan over 20,000 blocks, empty or
// with 10 messages each; the ns/block metric is what a restart costs per
// block.
func BenchmarkVerifyChain(b *testing.B) {
	for _, perBlock := range []int{0, 10} {
		b.Run(fmt.Sprintf("messages=%d", perBlock), func(b *testing.B) { benchVerifyChain(b, perBlock) })
	}
}

func benchVerifyChain(b *testing.B, perBlock int) {
	s := benchStore(b)
	_, key, _ := ed25519.GenerateKey(nil)
	const n = 20000
	tip := s.Tip()
	parent := tip.Header
	blocks := make([]*chain.Block, 0, 1000)
	for h := 1; h <= n; h++ {
		blk := chain.Seal(&parent, benchMsgs(perBlock, uint64(h*perBlock)), uint64(h), key)
		blocks = append(blocks, blk)
		parent = blk.Header
		if len(blocks) == cap(blocks) {
			if err := s.Commit(Commit{Blocks: blocks}); err != nil {
				b.Fatal(err)
			}
			blocks = blocks[:0]
		}
	}
	var pk chain.PublicKey
	copy(pk[:], key.Public().(ed25519.PublicKey))
	if err := s.SetProducer(pk); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		got, err := s.VerifyChain(context.Background(), nil)
		if err != nil || got != n+1 {
			b.Fatal(got, err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/block")
}

// BenchmarkHasMessages is the uniqueness check of a 1,000-message batch of
// new IDs against 100,000 stored messages, flushed to the tables: through
// Pebble alone (before the startup check has armed the ID filter), and
// with the filter, as a running leader does it.
func BenchmarkHasMessages(b *testing.B) {
	s := benchStore(b)
	_, key, _ := ed25519.GenerateKey(nil)
	const blocks, per = 100, 1000
	for i := range uint64(blocks) {
		msgs := benchMsgs(per, i*per)
		tip := s.Tip()
		blk := chain.Seal(&tip.Header, msgs, 1, key)
		conf := make([]Confirmed, per)
		for j := range msgs {
			conf[j] = Confirmed{Message: msgs[j], Height: blk.Height, Index: uint32(j)}
		}
		if err := s.Commit(Commit{Blocks: []*chain.Block{blk}, Messages: conf}); err != nil {
			b.Fatal(err)
		}
	}
	if err := s.db.Flush(); err != nil {
		b.Fatal(err)
	}
	fresh := benchMsgs(per, blocks*per)
	ids := make([]chain.Hash, per)
	for i := range fresh {
		ids[i] = fresh[i].ID()
	}
	run := func(b *testing.B) {
		for b.Loop() {
			has, err := s.HasMessages(ids)
			if err != nil || len(has) != per {
				b.Fatal(has, err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*per), "ns/id")
	}
	b.Run("pebble", run)
	s.FilterMessageIDs()
	if _, err := s.VerifyChain(context.Background(), nil); err != nil {
		b.Fatal(err)
	}
	b.Run("filter", run)
}
