package snapshot

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"strings"
)

// Format constants and limits. Part of the stream format.
const (
	// Magic opens every offer ("TRSX").
	Magic uint32 = 0x58535254
	// Version is the format version a sender offers by default; a receiver
	// reads every version from 1 to Version. Version 2 moves each file's
	// CRC-32C from the offer to a file-end frame after the file's chunks, and
	// has the receiver report, after done, whether it installed the snapshot.
	Version = 2
	// MaxFiles bounds the files of one snapshot.
	MaxFiles = 1 << 16
	// MaxNameBytes bounds a file name.
	MaxNameBytes = 255
	// MaxFileBytes bounds one file's size (1 TiB).
	MaxFileBytes = 1 << 40
	// MaxTotalBytes bounds a snapshot's size (16 TiB).
	MaxTotalBytes = 1 << 44
	// MaxMetaBytes bounds the caller's metadata in the offer.
	MaxMetaBytes = 64 << 10
	// MaxChunkBytes bounds the data of one chunk.
	MaxChunkBytes = 4 << 20
	// maxReasonBytes bounds the text of an error frame.
	maxReasonBytes = 1024

	frameHeaderSize = 9
	chunkHeaderSize = 12
	fileEntryMax    = 2 + MaxNameBytes + 8 + 4
	maxOfferBody    = 4 + 1 + 8 + 8 + 4 + MaxMetaBytes + 4 + MaxFiles*fileEntryMax
	maxResumeBody   = 4 + MaxFiles*12
)

// Frame types. Part of the format.
const (
	frameOffer  byte = 1
	frameResume byte = 2
	frameChunk  byte = 3
	frameAck    byte = 4
	frameDone   byte = 5
	frameError  byte = 6
	// Version 2 only.
	frameFileEnd   byte = 7
	frameInstalled byte = 8
)

// maxBody is the limit on the body of each frame type (0: unknown type).
var maxBody = [...]int{
	frameOffer:  maxOfferBody,
	frameResume: maxResumeBody,
	frameChunk:  chunkHeaderSize + MaxChunkBytes,
	frameAck:    8,
	frameDone:   0,
	frameError:  2 + maxReasonBytes,
	// Version 2 only.
	frameFileEnd:   8,
	frameInstalled: 0,
}

func frameName(t byte) string {
	switch t {
	case frameOffer:
		return "offer"
	case frameResume:
		return "resume"
	case frameChunk:
		return "chunk"
	case frameAck:
		return "ack"
	case frameDone:
		return "done"
	case frameError:
		return "error"
	case frameFileEnd:
		return "file-end"
	case frameInstalled:
		return "installed"
	}
	return fmt.Sprintf("frame(%d)", t)
}

// Errors, returned wrapped; check with errors.Is.
var (
	// ErrBadStream: the peer sent bytes that break the format, a limit, or
	// the protocol (a checksum that does not match included).
	ErrBadStream = errors.New("snapshot: bad stream")
	// ErrRefused: the peer sent an error frame (its reason follows).
	ErrRefused = errors.New("snapshot: refused by peer")
	// ErrInvalidArg: a bad argument or Config field.
	ErrInvalidArg = errors.New("snapshot: invalid argument")
	// ErrNotNeeded: the receiver holds the offered state already (an
	// accept callback returns an error wrapping it); the sender's error
	// wraps it too, with ErrRefused. Part of the format: the reason
	// "not needed".
	ErrNotNeeded = errors.New("snapshot: not needed by the receiver")
	// ErrNotInstalled: the receiver (version 2) received the snapshot whole
	// but its install failed; the sender's error wraps it, with ErrRefused.
	// Part of the format: the reason "install failed" after done.
	ErrNotInstalled = errors.New("snapshot: received but not installed by the receiver")
	// ErrOfferRefused: the receiver refused the offer itself as a bad
	// stream or as of an unknown version, which is what a receiver that
	// reads an earlier format version says to a later one. Sending again
	// with Config.Version 1 may succeed.
	ErrOfferRefused = errors.New("snapshot: offer refused (the receiver may read only an earlier format version)")
)

// Error frame reasons that are part of the format.
const (
	// reasonNotNeeded is the reason for ErrNotNeeded.
	reasonNotNeeded = "not needed"
	// reasonNotInstalled is the reason for ErrNotInstalled.
	reasonNotInstalled = "install failed"
	// reasonBadStream answers bytes that break the format.
	reasonBadStream = "bad stream"
	// reasonVersion answers an offer of a format version the receiver
	// does not read (version 1 receivers said reasonBadStream).
	reasonVersion = "unsupported version"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errVersion: an offer of a format version this build does not read. It
// wraps ErrBadStream; the receiver says reasonVersion.
var errVersion = fmt.Errorf("%w: unsupported version", ErrBadStream)

func badf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadStream, fmt.Sprintf(format, args...))
}

// Identity names a snapshot: the applied index and term of the state it
// holds, and the caller's metadata (for example the cluster configuration at
// that index), opaque here.
type Identity struct {
	Index, Term uint64
	Meta        []byte
}

// FileInfo is one file of a manifest.
type FileInfo struct {
	Name string
	Size int64
	CRC  uint32 // CRC-32C of the whole file
}

// offer is a decoded offer frame body.
type offer struct {
	version byte // format version, 1..Version
	id      Identity
	files   []FileInfo
	total   int64
}

// held is what the receiver holds of one file: its first n bytes, with crc.
type held struct {
	n   int64
	crc uint32
}

// appendFrame appends a frame of type typ with the given body (several
// pieces, concatenated) to dst.
func appendFrame(dst []byte, typ byte, body ...[]byte) []byte {
	var n int
	for _, b := range body {
		n += len(b)
	}
	start := len(dst)
	dst = append(dst, typ)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(n))
	dst = append(dst, 0, 0, 0, 0)
	crc := crc32.Checksum(dst[start:start+5], castagnoli)
	for _, b := range body {
		dst = append(dst, b...)
		crc = crc32.Update(crc, castagnoli, b)
	}
	binary.LittleEndian.PutUint32(dst[start+5:], crc)
	return dst
}

// frameReader reads frames from a stream, reusing one body buffer.
type frameReader struct {
	r   io.Reader
	buf []byte
}

// next reads one frame. The body aliases the reader's buffer until the next
// call. A body's buffer grows as its bytes arrive: a length field alone never
// costs more than 64 KiB, or the size of the previous frame.
func (fr *frameReader) next() (typ byte, body []byte, err error) {
	h, err := fr.header()
	if err != nil {
		return 0, nil, err
	}
	typ, n := h[0], binary.LittleEndian.Uint32(h[1:])
	body, err = readBody(fr.r, int(n), fr.buf)
	fr.buf = body[:0]
	if err != nil {
		return 0, nil, fr.cut(typ, n, err)
	}
	if err := checkFrame(h, body); err != nil {
		return 0, nil, err
	}
	return typ, body, nil
}

// header reads a frame header and checks its type and length against the
// type's limit.
func (fr *frameReader) header() (h [frameHeaderSize]byte, err error) {
	if _, err := io.ReadFull(fr.r, h[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return h, badf("stream ends inside a frame header")
		}
		return h, err
	}
	typ := h[0]
	n := binary.LittleEndian.Uint32(h[1:])
	if int(typ) >= len(maxBody) || typ == 0 {
		return h, badf("unknown frame type %d", typ)
	}
	if uint64(n) > uint64(maxBody[typ]) {
		return h, badf("%s frame of %d bytes, limit %d", frameName(typ), n, maxBody[typ])
	}
	return h, nil
}

// cut turns an error reading the body of a frame into a bad stream if the
// stream ended inside it.
func (fr *frameReader) cut(typ byte, n uint32, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return badf("stream ends inside a %d-byte %s frame", n, frameName(typ))
	}
	return err
}

// checkFrame checks the CRC in header h against the body, given in pieces.
func checkFrame(h [frameHeaderSize]byte, body ...[]byte) error {
	crc := crc32.Checksum(h[:5], castagnoli)
	for _, b := range body {
		crc = crc32.Update(crc, castagnoli, b)
	}
	if got := binary.LittleEndian.Uint32(h[5:]); got != crc {
		return badf("%s frame checksum %#08x, computed %#08x", frameName(h[0]), got, crc)
	}
	return nil
}

// chunkInto reads the body of the chunk frame whose header is h: its chunk
// header into ch, its data into a buffer from get (called with the data's
// length; nil: give up). It checks the frame's CRC.
func (fr *frameReader) chunkInto(h [frameHeaderSize]byte, ch *[chunkHeaderSize]byte, get func(int) []byte) ([]byte, error) {
	n := binary.LittleEndian.Uint32(h[1:])
	if n <= chunkHeaderSize {
		return nil, badf("chunk of %d bytes holds no data", n)
	}
	if _, err := io.ReadFull(fr.r, ch[:]); err != nil {
		return nil, fr.cut(h[0], n, err)
	}
	data := get(int(n) - chunkHeaderSize)
	if data == nil {
		return nil, errWriterStopped
	}
	if _, err := io.ReadFull(fr.r, data); err != nil {
		return data, fr.cut(h[0], n, err)
	}
	return data, checkFrame(h, ch[:], data)
}

// errWriterStopped: the receiver's disk writer stopped (its error follows).
var errWriterStopped = errors.New("snapshot: the disk writer stopped")

// readBody reads n bytes into buf (reused if large enough), growing it only
// as the bytes arrive.
func readBody(r io.Reader, n int, buf []byte) ([]byte, error) {
	if cap(buf) >= n {
		buf = buf[:n]
		_, err := io.ReadFull(r, buf)
		return buf, err
	}
	buf = buf[:0]
	for len(buf) < n {
		next := min(n, max(cap(buf), 2*len(buf), 64<<10))
		if next > cap(buf) {
			buf = append(make([]byte, 0, next), buf...)
		}
		if _, err := io.ReadFull(r, buf[len(buf):next]); err != nil {
			return buf, err
		}
		buf = buf[:next]
	}
	return buf, nil
}

// decoder reads fields from b; the first error sticks, later reads give zeros.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = badf(format, args...)
	}
}

func (d *decoder) take(n uint64) []byte {
	if d.err != nil {
		return nil
	}
	if uint64(len(d.b)) < n {
		d.fail("field of %d bytes, %d left", n, len(d.b))
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) u8() byte {
	if v := d.take(1); v != nil {
		return v[0]
	}
	return 0
}

func (d *decoder) u16() uint16 {
	if v := d.take(2); v != nil {
		return binary.LittleEndian.Uint16(v)
	}
	return 0
}

func (d *decoder) u32() uint32 {
	if v := d.take(4); v != nil {
		return binary.LittleEndian.Uint32(v)
	}
	return 0
}

func (d *decoder) u64() uint64 {
	if v := d.take(8); v != nil {
		return binary.LittleEndian.Uint64(v)
	}
	return 0
}

func (d *decoder) end(what string) error {
	if d.err == nil && len(d.b) != 0 {
		d.fail("%s has %d trailing bytes", what, len(d.b))
	}
	return d.err
}

// checkName reports whether name is a plain base name a receiver may create.
func checkName(name string) error {
	switch {
	case len(name) == 0 || len(name) > MaxNameBytes:
		return fmt.Errorf("file name of %d bytes, want 1..%d", len(name), MaxNameBytes)
	case name == "." || name == "..":
		return fmt.Errorf("file name %q", name)
	case strings.ContainsAny(name, "/\\\x00"):
		return fmt.Errorf("file name %q holds a path separator or NUL", name)
	}
	return nil
}

// appendOffer encodes an offer body.
func appendOffer(dst []byte, o *offer) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, Magic)
	v := o.version
	if v == 0 {
		v = Version
	}
	dst = append(dst, v)
	dst = binary.LittleEndian.AppendUint64(dst, o.id.Index)
	dst = binary.LittleEndian.AppendUint64(dst, o.id.Term)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(o.id.Meta)))
	dst = append(dst, o.id.Meta...)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(o.files)))
	for _, f := range o.files {
		dst = binary.LittleEndian.AppendUint16(dst, uint16(len(f.Name)))
		dst = append(dst, f.Name...)
		dst = binary.LittleEndian.AppendUint64(dst, uint64(f.Size))
		dst = binary.LittleEndian.AppendUint32(dst, f.CRC)
	}
	return dst
}

// decodeOffer decodes and checks an offer body. It never panics; bad bytes
// give an error wrapping ErrBadStream.
func decodeOffer(b []byte) (*offer, error) {
	d := decoder{b: b}
	if m := d.u32(); m != Magic && d.err == nil {
		return nil, badf("offer magic %#08x, want %#08x", m, Magic)
	}
	v := d.u8()
	if (v < 1 || v > Version) && d.err == nil {
		return nil, fmt.Errorf("%w: offer format version %d, this build reads 1 to %d", errVersion, v, Version)
	}
	o := &offer{version: v}
	o.id.Index = d.u64()
	o.id.Term = d.u64()
	ml := d.u32()
	if ml > MaxMetaBytes {
		d.fail("metadata of %d bytes, limit %d", ml, MaxMetaBytes)
	}
	o.id.Meta = bytes.Clone(d.take(uint64(ml)))
	n := d.u32()
	if d.err != nil {
		return nil, d.err
	}
	if n > MaxFiles {
		return nil, badf("%d files, limit %d", n, MaxFiles)
	}
	// Each entry needs at least 15 bytes: bound the count before allocating.
	if uint64(n)*15 > uint64(len(d.b)) {
		return nil, badf("%d files cannot fit in %d bytes", n, len(d.b))
	}
	o.files = make([]FileInfo, 0, n)
	seen := make(map[string]struct{}, n)
	for i := uint32(0); i < n && d.err == nil; i++ {
		name := string(d.take(uint64(d.u16())))
		size := d.u64()
		crc := d.u32()
		if d.err != nil {
			break
		}
		if err := checkName(name); err != nil {
			return nil, badf("file %d: %v", i, err)
		}
		if _, dup := seen[name]; dup {
			return nil, badf("file %d: name %q repeated", i, name)
		}
		seen[name] = struct{}{}
		if size > MaxFileBytes {
			return nil, badf("file %q of %d bytes, limit %d", name, size, int64(MaxFileBytes))
		}
		if o.total += int64(size); o.total > MaxTotalBytes {
			return nil, badf("files total more than %d bytes", int64(MaxTotalBytes))
		}
		if v >= 2 && crc != 0 {
			return nil, badf("file %q: a version %d offer carries CRC %#08x, want 0 (the file-end frame carries it)", name, v, crc)
		}
		o.files = append(o.files, FileInfo{Name: name, Size: int64(size), CRC: crc})
	}
	if err := d.end("offer"); err != nil {
		return nil, err
	}
	return o, nil
}

func appendResume(dst []byte, hs []held) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(hs)))
	for _, h := range hs {
		dst = binary.LittleEndian.AppendUint64(dst, uint64(h.n))
		dst = binary.LittleEndian.AppendUint32(dst, h.crc)
	}
	return dst
}

// decodeResume decodes a resume body for the files of an offer.
func decodeResume(b []byte, files []FileInfo) ([]held, error) {
	d := decoder{b: b}
	n := d.u32()
	if d.err == nil && uint64(n) != uint64(len(files)) {
		return nil, badf("resume for %d files, offered %d", n, len(files))
	}
	if d.err == nil && uint64(len(d.b)) != uint64(n)*12 {
		return nil, badf("resume for %d files in %d bytes", n, len(d.b))
	}
	hs := make([]held, 0, len(files))
	for i := range files {
		h := held{n: int64(d.u64()), crc: d.u32()}
		if d.err != nil {
			break
		}
		if h.n < 0 || h.n > files[i].Size {
			return nil, badf("resume holds %d bytes of %q, which has %d", uint64(h.n), files[i].Name, files[i].Size)
		}
		hs = append(hs, h)
	}
	if err := d.end("resume"); err != nil {
		return nil, err
	}
	return hs, nil
}

// decodeChunk splits a chunk body.
func decodeChunk(b []byte) (file uint32, off uint64, data []byte, err error) {
	if len(b) <= chunkHeaderSize {
		return 0, 0, nil, badf("chunk of %d bytes holds no data", len(b))
	}
	return binary.LittleEndian.Uint32(b), binary.LittleEndian.Uint64(b[4:]), b[chunkHeaderSize:], nil
}

// appendFileEnd encodes a file-end body: file number i has CRC-32C crc.
func appendFileEnd(dst []byte, i uint32, crc uint32) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, i)
	return binary.LittleEndian.AppendUint32(dst, crc)
}

func decodeFileEnd(b []byte) (file uint32, crc uint32, err error) {
	if len(b) != 8 {
		return 0, 0, badf("file-end of %d bytes, want 8", len(b))
	}
	return binary.LittleEndian.Uint32(b), binary.LittleEndian.Uint32(b[4:]), nil
}

func appendU64(dst []byte, v uint64) []byte { return binary.LittleEndian.AppendUint64(dst, v) }

func decodeAck(b []byte) (uint64, error) {
	if len(b) != 8 {
		return 0, badf("ack of %d bytes, want 8", len(b))
	}
	return binary.LittleEndian.Uint64(b), nil
}

func appendError(dst []byte, reason string) []byte {
	if len(reason) > maxReasonBytes {
		reason = reason[:maxReasonBytes]
	}
	body := binary.LittleEndian.AppendUint16(nil, uint16(len(reason)))
	return appendFrame(dst, frameError, body, []byte(reason))
}

// errorReason decodes an error frame's body.
func errorReason(b []byte) (string, error) {
	d := decoder{b: b}
	reason := string(d.take(uint64(d.u16())))
	return reason, d.end("error frame")
}

// decodeError returns the peer's refusal as an error wrapping ErrRefused.
func decodeError(b []byte) error {
	reason, err := errorReason(b)
	if err != nil {
		return err
	}
	switch reason {
	case reasonNotNeeded:
		return fmt.Errorf("%w: %w", ErrRefused, ErrNotNeeded)
	case reasonNotInstalled:
		return fmt.Errorf("%w: %w", ErrRefused, ErrNotInstalled)
	}
	return fmt.Errorf("%w: %q", ErrRefused, reason)
}
