package vfs

import (
	"path/filepath"
	"testing"
)

// BenchmarkFdatasync measures appending 100 bytes and fdatasync-ing them on the
// real file system: the cost one group commit pays.
func BenchmarkFdatasync(b *testing.B) {
	f, err := OS{}.Create(filepath.Join(b.TempDir(), "f"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	p := make([]byte, 100)
	for b.Loop() {
		if _, err := f.Write(p); err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
	}
}
