package bench

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"github.com/kimura-ledger/kimura/internal/api"
	"github.com/kimura-ledger/kimura/internal/chain"
)

// senderKeys is how many sender keys a pool spreads its messages over.
const senderKeys = 16

// Pool limits. A pool is held in memory whole (IDs, bodies, and for batch
// loads a second copy joined into batches: 812 B a message of 100 bytes),
// so what a run asks for is checked up front, where a bad flag is a usage
// error rather than a makeslice panic or an out-of-memory kill minutes into
// signing.
const (
	// MaxPoolMessages is the most messages a pool holds, about 8 GB of
	// 100-byte messages; the index's int32 positions go far beyond it.
	MaxPoolMessages = 10_000_000
	// maxPoolBytes bounds a pool of larger messages the same way.
	maxPoolBytes = 8 << 30
	// poolOverhead is a message's bytes in a pool besides its content,
	// counted twice (a body, and its copy in a batch): ID, index entry,
	// slice headers and twice the JSON around the content.
	poolOverhead = 610
)

// poolCap is the most messages of contentBytes each a pool may hold.
func poolCap(contentBytes int) int {
	return min(MaxPoolMessages, maxPoolBytes/(2*contentBytes+poolOverhead))
}

// checkPoolSize refuses a pool of n messages of contentBytes each over
// poolCap. n is a float so that a rate × duration is checked before it is
// converted to an int, which could overflow.
func checkPoolSize(n float64, contentBytes int) error {
	if c := poolCap(contentBytes); !(n <= float64(c)) {
		return fmt.Errorf("more than a run may pre-sign (at most %s messages of %d bytes, %d GiB in memory)", thousands(int64(c)), contentBytes, maxPoolBytes>>30)
	}
	return nil
}

// messageCount formats a count that may be too large for an int.
func messageCount(n float64) string {
	if n < 1e15 {
		return thousands(int64(n))
	}
	return fmt.Sprintf("%.3g", n)
}

// Pool holds pre-signed messages, each already encoded as the JSON body of
// POST /message, so that neither signing nor encoding is timed. Message i
// is sent by key i%senderKeys with nonce i/senderKeys+1: every message of a
// pool is unique, and a pool can be replayed against any fresh node.
//
// A Pool is filled by Grow and then only read; it is not safe to Grow while
// a load reads it.
type Pool struct {
	contentBytes int
	keys         []ed25519.PrivateKey
	ids          []chain.Hash
	bodies       [][]byte
	index        map[chain.Hash]int32
	batches      map[int][][]byte // batch size -> bodies of POST /messages
}

// NewPool returns an empty pool of messages with contentBytes of content.
// The sender keys are derived from seed, so that two pools with the same
// seed hold the same messages.
func NewPool(contentBytes int, seed string) *Pool {
	p := &Pool{contentBytes: contentBytes, index: make(map[chain.Hash]int32), batches: make(map[int][][]byte)}
	for i := range senderKeys {
		s := chain.Sum([]byte(fmt.Sprintf("kimura-bench sender %s %d", seed, i)))
		p.keys = append(p.keys, ed25519.NewKeyFromSeed(s[:]))
	}
	return p
}

// Len is the number of messages in the pool.
func (p *Pool) Len() int { return len(p.ids) }

// ID returns message i's ID.
func (p *Pool) ID(i int) chain.Hash { return p.ids[i] }

// Index returns the position of the message with ID id.
func (p *Pool) Index(id chain.Hash) (int, bool) {
	i, ok := p.index[id]
	return int(i), ok
}

// Body returns the JSON body of POST /message for message i.
func (p *Pool) Body(i int) []byte { return p.bodies[i] }

// Message signs message i (as the pool holds it) afresh.
func (p *Pool) Message(i int) chain.Message { return signed(p.keys, p.contentBytes, i) }

func signed(keys []ed25519.PrivateKey, contentBytes, i int) chain.Message {
	return chain.SignMessage(keys[i%len(keys)], uint64(i/len(keys))+1, content(contentBytes, i))
}

// content is contentBytes of ASCII that names message i.
func content(n, i int) string {
	s := "kimura-bench " + strconv.Itoa(i) + " "
	if len(s) >= n {
		return s[:n]
	}
	return s + strings.Repeat("x", n-len(s))
}

// Grow signs messages until the pool holds at least n, on every core.
func (p *Pool) Grow(ctx context.Context, n int) error {
	from := len(p.ids)
	if n <= from {
		return nil
	}
	// The configurations check their sizes; this is the last guard.
	if err := checkPoolSize(float64(n), p.contentBytes); err != nil {
		return fmt.Errorf("bench: a pool of %d messages is %w", n, err)
	}
	ids := make([]chain.Hash, n-from)
	bodies := make([][]byte, n-from)
	workers := runtime.NumCPU()
	var wg sync.WaitGroup
	errs := make([]error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k, j := 0, w; j < len(ids); k, j = k+1, j+workers {
				if k%1024 == 0 && ctx.Err() != nil {
					errs[w] = ctx.Err()
					return
				}
				m := signed(p.keys, p.contentBytes, from+j)
				b, err := json.Marshal(api.NewSubmission(&m))
				if err != nil {
					errs[w] = fmt.Errorf("bench: encode message: %w", err)
					return
				}
				ids[j], bodies[j] = m.ID(), b
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	for j, id := range ids {
		p.index[id] = int32(from + j)
	}
	p.ids = append(p.ids, ids...)
	p.bodies = append(p.bodies, bodies...)
	clear(p.batches)
	return nil
}

// BatchBodies returns the bodies of POST /messages that hold the pool's
// messages size at a time, in order: body k holds messages [k*size, (k+1)*size).
// A trailing partial batch is left out.
func (p *Pool) BatchBodies(size int) [][]byte {
	if b, ok := p.batches[size]; ok {
		return b
	}
	var out [][]byte
	for k := 0; (k+1)*size <= len(p.bodies); k++ {
		out = append(out, batchBody(p.bodies[k*size:(k+1)*size]))
	}
	p.batches[size] = out
	return out
}

// batchBody joins single-message bodies into {"messages":[...]}.
func batchBody(bodies [][]byte) []byte {
	n := len(`{"messages":[]}`) + len(bodies)
	for _, b := range bodies {
		n += len(b)
	}
	var buf bytes.Buffer
	buf.Grow(n)
	buf.WriteString(`{"messages":[`)
	for i, b := range bodies {
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.Write(b)
	}
	buf.WriteString(`]}`)
	return buf.Bytes()
}

// bareKey is the key the bare endpoint stores a message under: sender and
// nonce, which is what makes a message unique.
func bareKey(m *chain.Message) []byte {
	k := make([]byte, 0, chain.PublicKeySize+8)
	k = append(k, m.Sender[:]...)
	return binary.BigEndian.AppendUint64(k, m.Nonce)
}
