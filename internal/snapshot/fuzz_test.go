package snapshot

import (
	"bytes"
	"context"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func FuzzReadFrame(f *testing.F) {
	f.Add(appendFrame(nil, frameAck, make([]byte, 8)))
	f.Add(appendFrame(nil, frameDone))
	f.Add(appendError(nil, "no"))
	f.Add(appendFrame(nil, frameOffer, appendOffer(nil, &offer{files: []FileInfo{{Name: "a", Size: 1}}})))
	f.Add([]byte{frameChunk, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0})
	f.Add(appendFrame(nil, frameFileEnd, appendFileEnd(nil, 3, 0xdeadbeef)))
	f.Add(appendFrame(nil, frameInstalled))
	f.Add(appendError(nil, reasonNotInstalled))
	f.Add(appendFrame(nil, frameOffer, appendOffer(nil, &offer{version: 1, files: []FileInfo{{Name: "a", Size: 1, CRC: 9}}})))
	f.Fuzz(func(t *testing.T, in []byte) {
		fr := &frameReader{r: bytes.NewReader(in)}
		for {
			typ, body, err := fr.next()
			if err != nil {
				return
			}
			if len(body) > maxBody[typ] {
				t.Fatalf("%s frame of %d bytes passed the limit", frameName(typ), len(body))
			}
			switch typ {
			case frameOffer:
				decodeOffer(body)
			case frameChunk:
				decodeChunk(body)
			case frameAck:
				decodeAck(body)
			case frameError:
				decodeError(body)
			case frameFileEnd:
				decodeFileEnd(body)
			}
		}
	})
}

func FuzzDecodeOffer(f *testing.F) {
	f.Add(appendOffer(nil, &offer{id: Identity{Index: 5, Term: 1, Meta: []byte("m")},
		files: []FileInfo{{Name: "000001.sst", Size: 100, CRC: 7}, {Name: "MANIFEST-000001", Size: 0}}}))
	f.Add(appendOffer(nil, &offer{}))
	f.Add(appendOffer(nil, &offer{version: 1, id: Identity{Index: 5, Term: 1},
		files: []FileInfo{{Name: "000001.sst", Size: 100, CRC: 7}}}))
	f.Add(appendOffer(nil, &offer{version: 2, id: Identity{Index: 5, Term: 1},
		files: []FileInfo{{Name: "000001.sst", Size: 100}, {Name: "x", Size: 0}}}))
	f.Add(appendOffer(nil, &offer{version: Version + 1}))
	f.Fuzz(func(t *testing.T, in []byte) {
		o, err := decodeOffer(in)
		if err != nil {
			return
		}
		seen := map[string]bool{}
		var total int64
		for _, fi := range o.files {
			if checkName(fi.Name) != nil || seen[fi.Name] || filepath.Base(fi.Name) != fi.Name || fi.Size < 0 || fi.Size > MaxFileBytes {
				t.Fatalf("accepted file %+v", fi)
			}
			seen[fi.Name] = true
			total += fi.Size
		}
		if o.version < 1 || o.version > Version {
			t.Fatalf("accepted an offer of format version %d", o.version)
		}
		if total != o.total || total > MaxTotalBytes || len(o.id.Meta) > MaxMetaBytes {
			t.Fatalf("accepted offer totalling %d (%d), meta %d", total, o.total, len(o.id.Meta))
		}
		if !bytes.Equal(appendOffer(nil, o), in) {
			t.Fatal("offer does not re-encode to its input")
		}
		hs := make([]held, len(o.files))
		decodeResume(appendResume(nil, hs), o.files)
	})
}

// scriptConn feeds a receiver fixed bytes and swallows what it writes.
type scriptConn struct {
	in io.Reader
}

func (c *scriptConn) Read(b []byte) (int, error)  { return c.in.Read(b) }
func (c *scriptConn) Write(b []byte) (int, error) { return len(b), nil }

// FuzzReceive feeds a receiver a whole stream from a stranger and checks
// that it never writes outside its staging directory, and that what it
// returns as a success is exactly what the manifest promised.
func FuzzReceive(f *testing.F) {
	data := []byte("hello, snapshot")
	o := &offer{version: 1, id: Identity{Index: 1, Term: 1}, files: []FileInfo{{Name: "f", Size: int64(len(data)), CRC: crcOf(data)}}}
	good := appendFrame(nil, frameOffer, appendOffer(nil, o))
	chunk := append(append(make([]byte, 0, 12), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), data...)
	good = appendFrame(good, frameChunk, chunk)
	f.Add(good)
	// Version 2: the CRC comes in a file-end frame after the chunks.
	o2 := &offer{version: 2, id: Identity{Index: 1, Term: 1}, files: []FileInfo{{Name: "f", Size: int64(len(data))}, {Name: "g", Size: 0}}}
	good2 := appendFrame(nil, frameOffer, appendOffer(nil, o2))
	good2 = appendFrame(good2, frameChunk, chunk)
	good2 = appendFrame(good2, frameFileEnd, appendFileEnd(nil, 0, crcOf(data)))
	good2 = appendFrame(good2, frameFileEnd, appendFileEnd(nil, 1, 0))
	f.Add(good2)
	f.Add(appendFrame(appendFrame(appendFrame(nil, frameOffer, appendOffer(nil, o2)), frameChunk, chunk),
		frameFileEnd, appendFileEnd(nil, 0, crcOf(data)^1)))
	bad := &offer{files: []FileInfo{{Name: "../x", Size: 1}}}
	f.Add(appendFrame(nil, frameOffer, appendOffer(nil, bad)))
	f.Add(appendFrame(nil, frameOffer, appendOffer(nil, &offer{})))
	cfg := testConfig()
	f.Fuzz(func(t *testing.T, in []byte) {
		parent := t.TempDir()
		staging := filepath.Join(parent, "staging")
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		res, err := Receive(ctx, &scriptConn{in: bytes.NewReader(in)}, staging, cfg, nil, func(Result) error { return nil })
		des, _ := os.ReadDir(parent)
		for _, de := range des {
			if de.Name() != "staging" {
				t.Fatalf("receiver created %q outside its staging directory", de.Name())
			}
		}
		if err != nil {
			return
		}
		files, merr := Manifest(res.Dir)
		if merr != nil {
			t.Fatal(merr)
		}
		if len(files) != res.Stats.Files {
			t.Fatalf("received %d files, manifest had %d", len(files), res.Stats.Files)
		}
	})
}

func crcOf(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }
