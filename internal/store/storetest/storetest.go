// Package storetest damages a Pebble database on disk the way a failing
// disk would, beneath Pebble, for tests of what Kimura does with such
// damage. It is for tests only.
package storetest

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// FlipBitInTables finds needle in the table files (*.sst) of the Pebble
// database in dir and flips the lowest bit of the byte at needle's offset
// at within it, in the first table file that holds needle, or in every
// one when all is true. It fails the test when no table file holds it.
// needle should be bytes that block compression leaves as they are: the
// middle of a hash or a signature, not its ends, which the compressor may
// fold into a copy of earlier bytes together with the bytes beside them.
func FlipBitInTables(t testing.TB, dir string, needle []byte, at int, all bool) {
	t.Helper()
	tables, err := filepath.Glob(filepath.Join(dir, "*.sst"))
	if err != nil {
		t.Fatal(err)
	}
	damaged := false
	for _, path := range tables {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		i := bytes.Index(data, needle)
		if i < 0 {
			continue
		}
		data[i+at] ^= 0x01
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		damaged = true
		if !all {
			break
		}
	}
	if !damaged {
		t.Fatalf("none of the table files %v in %s holds the bytes to damage", tables, dir)
	}
}
