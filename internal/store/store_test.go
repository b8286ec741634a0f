package store

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
)

// Two stores never share a directory: the second Open, even in the same
// process, is refused with ErrLocked until the first is closed.
func TestOpenLockedDir(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	if s2, err := Open(dir, nil); !errors.Is(err, ErrLocked) {
		if err == nil {
			_ = s2.Close()
		}
		t.Fatalf("second Open = %v, want ErrLocked", err)
	}
	if s2, err := OpenExisting(dir, nil); !errors.Is(err, ErrLocked) {
		if err == nil {
			_ = s2.Close()
		}
		t.Fatalf("OpenExisting of a locked dir = %v, want ErrLocked", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = mustOpen(t, dir)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestOpenCreatesMissingDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	s := mustOpen(t, dir)
	defer s.Close()
	if tip := s.Tip(); tip.Height != 0 {
		t.Fatalf("new store tip at %d", tip.Height)
	}
}

func TestOpenExisting(t *testing.T) {
	empty := t.TempDir()
	if _, err := OpenExisting(empty, nil); !errors.Is(err, ErrNoDatabase) {
		t.Fatalf("OpenExisting of an empty dir = %v, want ErrNoDatabase", err)
	}
	missing := filepath.Join(empty, "nothing-here")
	if _, err := OpenExisting(missing, nil); !errors.Is(err, ErrNoDatabase) {
		t.Fatalf("OpenExisting of a missing dir = %v, want ErrNoDatabase", err)
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Fatalf("OpenExisting created %s", missing)
	}
	if entries, _ := os.ReadDir(empty); len(entries) != 0 {
		t.Fatalf("OpenExisting left %d entries in an empty dir", len(entries))
	}

	dir := t.TempDir()
	s := mustOpen(t, dir)
	blocks, _ := buildChain(t, s, 1, 2)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := OpenExisting(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if tip := s.Tip(); tip.Height != 2 || tip.Hash != blocks[2].Hash() {
		t.Fatalf("tip %d %s, want 2 %s", tip.Height, tip.Hash, blocks[2].Hash())
	}
	wantIntact(t, s, 3)
}

func TestSetProducer(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	t.Cleanup(func() { _ = s.Close() })
	if _, ok, err := s.Producer(); ok || err != nil {
		t.Fatalf("new store has a producer: %v, %v", ok, err)
	}
	a, b := pub(testKey(3)), pub(testKey(4))
	if err := s.SetProducer(a); err != nil {
		t.Fatal(err)
	}
	if err := s.SetProducer(a); err != nil {
		t.Fatalf("pinning the same key again: %v", err)
	}
	if err := s.SetProducer(b); err == nil {
		t.Fatal("pinning a different producer succeeded")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = mustOpen(t, dir)
	if err := s.SetProducer(b); err == nil {
		t.Fatal("pinning a different producer after reopening succeeded")
	}
	if got, ok, err := s.Producer(); !ok || err != nil || got != a {
		t.Fatalf("Producer = %x, %v, %v; want %x", got[:], ok, err, a[:])
	}
}

// A peer's cached message is readable like a committed one.
func TestPutMessage(t *testing.T) {
	s, _ := newStore(t)
	blocks, _ := buildChain(t, s, 0)
	m := newBuilder().messages(1)[0]
	c := Confirmed{Message: m, Height: blocks[1].Height, Index: 3}
	if err := s.PutMessage(c); err != nil {
		t.Fatal(err)
	}
	got, err := s.Message(m.ID())
	if err != nil || got != c {
		t.Fatalf("Message = %+v, %v; want %+v", got, err, c)
	}
}

// TestOpenDamagedManifest: damage that stops Pebble from opening the
// database at all (here in the first record of its manifest) is a
// corruption from height 0 on, not an ordinary failure; for reads and for
// writes alike.
func TestOpenDamagedManifest(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	buildChain(t, s, 2, 2, 2)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	manifests, _ := filepath.Glob(filepath.Join(dir, "MANIFEST-*"))
	if len(manifests) != 1 {
		t.Fatalf("manifests %v, want one", manifests)
	}
	data, err := os.ReadFile(manifests[0])
	if err != nil {
		t.Fatal(err)
	}
	data[14] ^= 0x01
	if err := os.WriteFile(manifests[0], data, 0o644); err != nil {
		t.Fatal(err)
	}
	for name, open := range map[string]func(string, *slog.Logger) (*Store, error){"Open": Open, "OpenExisting": OpenExisting} {
		s, err := open(dir, nil)
		if err == nil {
			_ = s.Close()
		}
		ce, ok := IsCorruption(err)
		if !ok || ce.Height != 0 || !strings.Contains(ce.Reason, "does not open") {
			t.Errorf("%s of a damaged manifest = %v; want a *CorruptionError at height 0 saying it does not open", name, err)
		}
	}
}

// TestOpenDoesNotWriteGenesisOverDamage: a database without
// meta:last_height whose first table block is damaged is not taken for an
// empty one: Open writes no genesis into it, and VerifyChain reports it.
func TestOpenDoesNotWriteGenesisOverDamage(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	sizes := make([]int, 200) // enough for many data blocks: the damage is in the first alone
	for i := range sizes {
		sizes[i] = 2
	}
	buildChain(t, s, sizes...)
	if err := s.db.Delete(keyLastHeight, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil { // flushes everything into a table file
		t.Fatal(err)
	}
	tables, _ := filepath.Glob(filepath.Join(dir, "*.sst"))
	if len(tables) == 0 {
		t.Fatal("no table file")
	}
	for _, path := range tables {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		data[100] ^= 0x01 // inside the first data block, which holds the first keys
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	s = mustOpen(t, dir)
	if _, ok := IsCorruption(func() error { _, err := s.VerifyChain(t.Context(), nil); return err }()); !ok {
		t.Error("VerifyChain of a damaged database without meta:last_height found no corruption")
	}
	if _, err := s.get(keyLastHeight); !errors.Is(err, ErrNotFound) {
		t.Errorf("meta:last_height after Open: %v; want still absent (no genesis written)", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestOpenDamagedFiles: a database whose files Pebble cannot open as its
// manifest lists them (a table cut short or gone, the manifest gone) is a
// corruption from height 0 on, for Open and OpenExisting alike; and tables
// without any manifest are not taken for an empty directory, which Pebble
// would clear.
func TestOpenDamagedFiles(t *testing.T) {
	damages := map[string]func(t *testing.T, dir string){
		"table cut short": func(t *testing.T, dir string) {
			if err := os.Truncate(only(t, dir, "*.sst"), 100); err != nil {
				t.Fatal(err)
			}
		},
		"table gone": func(t *testing.T, dir string) {
			if err := os.Remove(only(t, dir, "*.sst")); err != nil {
				t.Fatal(err)
			}
		},
		"manifest gone": func(t *testing.T, dir string) {
			if err := os.Remove(only(t, dir, "MANIFEST-*")); err != nil {
				t.Fatal(err)
			}
		},
		"manifest marker gone": func(t *testing.T, dir string) {
			if err := os.Remove(only(t, dir, "marker.manifest.*")); err != nil {
				t.Fatal(err)
			}
		},
		"no manifest and no marker": func(t *testing.T, dir string) {
			for _, pat := range []string{"MANIFEST-*", "marker.*"} {
				files, _ := filepath.Glob(filepath.Join(dir, pat))
				for _, f := range files {
					if err := os.Remove(f); err != nil {
						t.Fatal(err)
					}
				}
			}
		},
	}
	for name, damage := range damages {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			s := mustOpen(t, dir)
			buildChain(t, s, 2, 2, 2)
			if err := s.Close(); err != nil { // one table holds it all
				t.Fatal(err)
			}
			damage(t, dir)
			for opener, open := range map[string]func(string, *slog.Logger) (*Store, error){"Open": Open, "OpenExisting": OpenExisting} {
				s, err := open(dir, nil)
				if err == nil {
					_ = s.Close()
				}
				if ce, ok := IsCorruption(err); !ok || ce.Height != 0 {
					t.Errorf("%s: %v; want a *CorruptionError at height 0", opener, err)
				}
			}
			if tables, _ := filepath.Glob(filepath.Join(dir, "*.sst")); name != "table gone" && len(tables) != 1 {
				t.Errorf("tables after the attempts: %v; want the one left untouched", tables)
			}
		})
	}
}

// TestOpenExistingWithoutNodeLock: an intact database copied without the
// node's lock file is still a database to check.
func TestOpenExistingWithoutNodeLock(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	buildChain(t, s, 1, 1)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "LOCK.kimura")); err != nil {
		t.Fatal(err)
	}
	s, err := OpenExisting(dir, nil)
	if err != nil {
		t.Fatalf("OpenExisting without LOCK.kimura: %v", err)
	}
	defer s.Close()
	wantIntact(t, s, 3)
}

// only returns the one file in dir matching pattern.
func only(t *testing.T, dir, pattern string) string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, pattern))
	if len(files) != 1 {
		t.Fatalf("%s in %s: %v, want one", pattern, dir, files)
	}
	return files[0]
}

// TestOpenFailuresOfTheMachineAreNotCorruption: a database that does not
// open for a reason of the machine's (here Pebble's own lock held by
// another opener) is an ordinary error, not damage to the chain.
func TestOpenFailuresOfTheMachineAreNotCorruption(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	buildChain(t, s, 1)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	other, err := pebble.Open(dir, quietDefaults()) // holds Pebble's LOCK
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	for name, open := range map[string]func(string, *slog.Logger) (*Store, error){"Open": Open, "OpenExisting": OpenExisting} {
		s, err := open(dir, nil)
		if err == nil {
			_ = s.Close()
			t.Fatalf("%s of a database another opener holds succeeded", name)
		}
		if _, ok := IsCorruption(err); ok {
			t.Errorf("%s with Pebble's lock held elsewhere: %v; want an ordinary error, not corruption", name, err)
		}
	}
}

// TestOpenExistingOfAStartThatStoppedEarly: a first start that stopped
// before anything was written (a manifest not yet made current, or a
// database without even genesis) leaves no chain to check: ErrNoDatabase,
// not corruption.
func TestOpenExistingOfAStartThatStoppedEarly(t *testing.T) {
	t.Run("manifest not made current", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "MANIFEST-000001"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := OpenExisting(dir, nil); !errors.Is(err, ErrNoDatabase) {
			t.Errorf("OpenExisting: %v, want ErrNoDatabase", err)
		}
	})
	t.Run("nothing written", func(t *testing.T) {
		dir := t.TempDir()
		db, err := pebble.Open(dir, quietDefaults())
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := OpenExisting(dir, nil); !errors.Is(err, ErrNoDatabase) {
			t.Errorf("OpenExisting: %v, want ErrNoDatabase", err)
		}
	})
}
