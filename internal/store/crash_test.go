package store

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/kimura-ledger/kimura/internal/chain"
)

// crashable is a store on an in-memory file system that can be cut back,
// as a power loss would, to exactly what was synced.
type crashable struct {
	t   *testing.T
	dir string
	mem *vfs.MemFS
	s   *Store
}

func newCrashable(t *testing.T) *crashable {
	c := &crashable{t: t, dir: t.TempDir(), mem: vfs.NewCrashableMem()}
	c.open()
	t.Cleanup(func() { _ = c.s.Close() })
	return c
}

func (c *crashable) open() {
	c.t.Helper()
	s, err := open(c.mem, c.dir, nil, false)
	if err != nil {
		c.t.Fatalf("open after a crash: %v", err)
	}
	c.s = s
}

// crash keeps only what was synced and reopens the store on it.
func (c *crashable) crash() {
	c.t.Helper()
	synced := c.mem.CrashClone(vfs.CrashCloneCfg{})
	if err := c.s.Close(); err != nil {
		c.t.Fatal(err)
	}
	c.mem = synced
	c.open()
}

// What AddPending and Commit acknowledge is on disk when they return: a
// power loss right after keeps every acknowledged pending message, and
// every committed block with its messages and the removal of exactly its
// pending entries.
func TestAcknowledgedWritesSurviveACrash(t *testing.T) {
	c := newCrashable(t)
	if err := c.s.SetProducer(pub(producerKey)); err != nil {
		t.Fatal(err)
	}
	bl := newBuilder()
	msgs := bl.messages(3)
	if err := c.s.AddPending([]Pending{{Seq: 1, Message: msgs[0]}, {Seq: 2, Message: msgs[1]}}); err != nil {
		t.Fatal(err)
	}
	if err := c.s.AddPending([]Pending{{Seq: 3, Message: msgs[2]}}); err != nil {
		t.Fatal(err)
	}
	c.crash()
	wantPending(t, c.s, 1, 2, 3)

	b := bl.seal(c.s.Tip(), msgs[:2])
	if err := c.s.Commit(Commit{Blocks: []*chain.Block{b}, Messages: confirmedOf(b, msgs[:2]), Pending: []uint64{1, 2}}); err != nil {
		t.Fatal(err)
	}
	c.crash()
	if tip := c.s.Tip(); tip.Height != 1 || tip.Hash != b.Hash() {
		t.Fatalf("tip after the crash: height %d hash %s; want block 1 %s", tip.Height, tip.Hash, b.Hash())
	}
	for i := range 2 {
		if conf, err := c.s.Message(msgs[i].ID()); err != nil || conf.Height != 1 || conf.Index != uint32(i) {
			t.Errorf("message %d after the crash: %+v, %v", i, conf, err)
		}
	}
	wantPending(t, c.s, 3)
	wantIntact(t, c.s, 2)
}

func wantPending(t *testing.T, s *Store, seqs ...uint64) {
	t.Helper()
	ps, err := s.LoadPending()
	if err != nil {
		t.Fatal(err)
	}
	got := make([]uint64, len(ps))
	for i := range ps {
		got[i] = ps[i].Seq
	}
	if !slices.Equal(got, seqs) {
		t.Fatalf("pending after the crash: %v, want %v", got, seqs)
	}
}

// snapshotFS records, before and after every change to a directory's names,
// what a power loss at that moment could leave: only the synced state, and
// the synced state with parts of the unsynced data.
type snapshotFS struct {
	*vfs.MemFS
	seed  uint64
	snaps []*vfs.MemFS
}

func (f *snapshotFS) snap() {
	f.snaps = append(f.snaps, f.CrashClone(vfs.CrashCloneCfg{}))
	for p := 10; p <= 90; p += 20 {
		f.seed++
		f.snaps = append(f.snaps, f.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: p, RNG: rand.New(rand.NewPCG(f.seed, 1))}))
	}
}

func (f *snapshotFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f.snap()
	defer f.snap()
	return f.MemFS.Create(name, c)
}

func (f *snapshotFS) Rename(from, to string) error {
	f.snap()
	defer f.snap()
	return f.MemFS.Rename(from, to)
}

func (f *snapshotFS) Remove(name string) error {
	f.snap()
	defer f.snap()
	return f.MemFS.Remove(name)
}

func (f *snapshotFS) Link(from, to string) error {
	f.snap()
	defer f.snap()
	return f.MemFS.Link(from, to)
}

func (f *snapshotFS) ReuseForWrite(from, to string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f.snap()
	defer f.snap()
	return f.MemFS.ReuseForWrite(from, to, c)
}

// A power loss at any moment of a first start leaves a directory the next
// start opens as a new chain (genesis only): never one it calls damaged,
// such as a manifest marker whose manifest did not reach the disk.
func TestFirstStartCrashAtAnyPoint(t *testing.T) {
	dir := t.TempDir()
	f := &snapshotFS{MemFS: vfs.NewCrashableMem()}
	s, err := open(f, dir, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	f.snap()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if len(f.snaps) < 20 {
		t.Fatalf("only %d crash points: the file system saw few of the first start's changes", len(f.snaps))
	}
	for i, mem := range f.snaps {
		s, err := open(mem, dir, nil, false)
		if err != nil {
			names, _ := mem.List(dir)
			t.Errorf("crash point %d of %d: %v; files %v", i, len(f.snaps), err, names)
			continue
		}
		if tip := s.Tip(); tip.Height != 0 || tip.Hash != chain.GenesisHash {
			t.Errorf("crash point %d: tip %d %s, want genesis", i, tip.Height, tip.Hash)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
