package snapshot

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Config configures both ends of a transfer.
type Config struct {
	// ChunkBytes is the data per chunk the sender sends. Must be in
	// [4 KiB, MaxChunkBytes].
	ChunkBytes int
	// WindowBytes is the most chunk data the sender keeps unacknowledged.
	// Must be at least ChunkBytes and at most 1 GiB.
	WindowBytes int64
	// IdleTimeout ends a transfer when one read or write makes no progress
	// for this long (it needs a connection with deadlines, a net.Conn; on
	// other streams it is not enforced). Must be > 0.
	IdleTimeout time.Duration
	// Logger receives progress and resume decisions. Required.
	Logger *slog.Logger
	// Version is the format version the sender offers, 1..Version (the
	// receiver reads any). With 2, Send returns only once the receiver
	// reports the snapshot installed; with 1, once it was received (for a
	// receiver that reads only version 1).
	Version int
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		ChunkBytes:  1 << 20,
		WindowBytes: 8 << 20,
		IdleTimeout: 30 * time.Second,
		Logger:      slog.Default(),
		Version:     Version,
	}
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	switch {
	case c.ChunkBytes < 4<<10 || c.ChunkBytes > MaxChunkBytes:
		return fmt.Errorf("%w: Config.ChunkBytes is %d, must be in [4 KiB, %d]", ErrInvalidArg, c.ChunkBytes, MaxChunkBytes)
	case c.WindowBytes < int64(c.ChunkBytes) || c.WindowBytes > 1<<30:
		return fmt.Errorf("%w: Config.WindowBytes is %d, must be in [ChunkBytes, 1 GiB]", ErrInvalidArg, c.WindowBytes)
	case c.IdleTimeout <= 0:
		return fmt.Errorf("%w: Config.IdleTimeout is %v, must be > 0", ErrInvalidArg, c.IdleTimeout)
	case c.Logger == nil:
		return fmt.Errorf("%w: Config.Logger is nil", ErrInvalidArg)
	case c.Version < 1 || c.Version > Version:
		return fmt.Errorf("%w: Config.Version is %d, must be in [1, %d]", ErrInvalidArg, c.Version, Version)
	}
	return nil
}

// Stats describes one transfer.
type Stats struct {
	Files int   // files in the snapshot
	Total int64 // bytes in the snapshot
	Held  int64 // bytes the receiver already held (resumed), not sent again
	Sent  int64 // chunk data bytes sent in this transfer
	// Installed: the receiver reported the snapshot installed (format
	// version 2); false after a version 1 transfer, which ends at receipt.
	Installed bool
}

// conn is the stream a transfer runs on, with deadlines if it has them.
type conn struct {
	rw      io.ReadWriter
	dl      interface{ SetDeadline(time.Time) error }
	timeout time.Duration
}

func newConn(ctx context.Context, rw io.ReadWriter, timeout time.Duration) (*conn, func() bool) {
	c := &conn{rw: rw, timeout: timeout}
	c.dl, _ = rw.(interface{ SetDeadline(time.Time) error })
	// A ctx that ends cuts the transfer short: every blocked read and write
	// returns at once.
	stop := context.AfterFunc(ctx, func() {
		if c.dl != nil {
			c.dl.SetDeadline(time.Unix(1, 0))
		} else if cl, ok := rw.(io.Closer); ok {
			cl.Close()
		}
	})
	return c, stop
}

// arm pushes the idle deadline forward; called before each read or write.
func (c *conn) arm() {
	if c.dl != nil {
		c.dl.SetDeadline(time.Now().Add(c.timeout))
	}
}

func (c *conn) Read(b []byte) (int, error) {
	c.arm()
	return c.rw.Read(b)
}

func (c *conn) Write(b []byte) (int, error) {
	c.arm()
	return c.rw.Write(b)
}

// ctxErr prefers ctx's error to the one a cut-short read or write gave.
func ctxErr(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil && err != nil {
		return fmt.Errorf("%w (%v)", cerr, err)
	}
	return err
}

// Manifest lists the regular files of dir (sorted by name) with their sizes
// and CRC-32Cs. It refuses anything but regular files and names the format
// cannot carry.
func Manifest(dir string) ([]FileInfo, error) { return listFiles(dir, true) }

// listFiles is Manifest; without withCRC the CRCs are left 0 (a version 2
// offer, whose file-end frames carry them: the files are read once, as they
// are sent).
func listFiles(dir string, withCRC bool) ([]FileInfo, error) {
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("snapshot: listing %s: %w", dir, err)
	}
	if len(des) > MaxFiles {
		return nil, fmt.Errorf("%w: %s holds %d entries, limit %d", ErrInvalidArg, dir, len(des), MaxFiles)
	}
	var files []FileInfo
	var total int64
	for _, de := range des {
		if !de.Type().IsRegular() {
			return nil, fmt.Errorf("%w: %s in %s is not a regular file", ErrInvalidArg, de.Name(), dir)
		}
		if err := checkName(de.Name()); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrInvalidArg, dir, err)
		}
		fi := FileInfo{Name: de.Name()}
		if withCRC {
			fi.Size, fi.CRC, err = fileCRC(filepath.Join(dir, de.Name()), -1)
		} else {
			var info os.FileInfo
			if info, err = de.Info(); err == nil {
				fi.Size = info.Size()
			}
		}
		if err != nil {
			return nil, fmt.Errorf("snapshot: %w", err)
		}
		if fi.Size > MaxFileBytes {
			return nil, fmt.Errorf("%w: %s is %d bytes, limit %d", ErrInvalidArg, fi.Name, fi.Size, int64(MaxFileBytes))
		}
		if total += fi.Size; total > MaxTotalBytes {
			return nil, fmt.Errorf("%w: %s holds more than %d bytes", ErrInvalidArg, dir, int64(MaxTotalBytes))
		}
		files = append(files, fi)
	}
	return files, nil
}

// fileCRC returns the CRC-32C of the first n bytes of the file at path (n <
// 0: all of it) and the number of bytes it covered.
func fileCRC(path string, n int64) (int64, uint32, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, fmt.Errorf("snapshot: %w", err)
	}
	defer f.Close()
	var r io.Reader = f
	if n >= 0 {
		r = io.LimitReader(f, n)
	}
	h := crc32.New(castagnoli)
	got, err := io.CopyBuffer(h, r, make([]byte, 256<<10))
	if err != nil {
		return 0, 0, fmt.Errorf("snapshot: reading %s: %w", path, err)
	}
	if n >= 0 && got != n {
		return got, 0, fmt.Errorf("snapshot: %s has %d bytes, want at least %d", path, got, n)
	}
	return got, h.Sum32(), nil
}

// Send streams the files of dir (a store checkpoint, which must not change
// meanwhile) as the snapshot id to the receiver at the other end of rw, and
// returns when the receiver reports every file whole, checked and fsynced,
// and (Config.Version 2) the snapshot installed: Stats.Installed. A receiver
// whose install failed gives an error wrapping ErrNotInstalled; one that
// refused the offer itself (perhaps it reads only version 1) an error
// wrapping ErrOfferRefused.
// If the receiver already holds part of this snapshot (an earlier transfer
// of it was cut), only the rest is sent. progress, if not nil, is called
// after each chunk with the bytes the receiver holds or was sent, and the
// snapshot's total. ctx cuts the transfer short; so does a peer that makes
// no progress for Config.IdleTimeout (if rw is a net.Conn). The caller closes
// rw.
func Send(ctx context.Context, rw io.ReadWriter, dir string, id Identity, cfg Config, progress func(sent, total int64)) (Stats, error) {
	if err := cfg.Validate(); err != nil {
		return Stats{}, err
	}
	if len(id.Meta) > MaxMetaBytes {
		return Stats{}, fmt.Errorf("%w: metadata of %d bytes, limit %d", ErrInvalidArg, len(id.Meta), MaxMetaBytes)
	}
	files, err := listFiles(dir, cfg.Version < 2)
	if err != nil {
		return Stats{}, err
	}
	o := &offer{version: byte(cfg.Version), id: id, files: files}
	for _, f := range files {
		o.total += f.Size
	}
	c, stop := newConn(ctx, rw, cfg.IdleTimeout)
	defer stop()
	st, err := send(ctx, c, dir, o, cfg, progress)
	if err != nil {
		err = ctxErr(ctx, err)
		if !isRefusal(err) {
			c.Write(appendError(nil, "sender stopped"))
		}
		return st, fmt.Errorf("snapshot: sending %s at index %d: %w", dir, id.Index, err)
	}
	cfg.Logger.Info("snapshot: sent", "index", id.Index, "term", id.Term, "files", st.Files,
		"bytes", st.Total, "held", st.Held, "sent", st.Sent, "installed", st.Installed)
	return st, nil
}

func isRefusal(err error) bool { return errors.Is(err, ErrRefused) }

// send runs the sender's side of the protocol on c.
func send(ctx context.Context, c *conn, dir string, o *offer, cfg Config, progress func(sent, total int64)) (Stats, error) {
	st := Stats{Files: len(o.files), Total: o.total}
	fr := &frameReader{r: c}
	hs, err := offerFiles(c, fr, o)
	if err != nil {
		return st, err
	}
	v2 := o.version >= 2
	starts, crcs, err := resumePoints(dir, o.files, hs, v2, cfg.Logger)
	if err != nil {
		return st, err
	}
	for _, s := range starts {
		st.Held += s
	}
	acks := make(chan ackEvent, 16)
	quit := make(chan struct{})
	defer close(quit)
	go readAcks(fr, acks, quit, v2)
	w := &window{acks: acks, limit: cfg.WindowBytes}
	buf := make([]byte, cfg.ChunkBytes)
	var hdr [frameHeaderSize + chunkHeaderSize]byte
	for i, f := range o.files {
		var crc *uint32
		if v2 {
			crc = &crcs[i]
		}
		if err := sendFile(ctx, c, w, dir, uint32(i), f, starts[i], crc, buf, hdr[:], func(n int64) {
			st.Sent += n
			if progress != nil {
				progress(st.Held+st.Sent, st.Total)
			}
		}); err != nil {
			// A write fails when the receiver hung up: say why it did.
			if rerr := w.refusal(time.Second); rerr != nil {
				return st, rerr
			}
			return st, err
		}
	}
	if err := w.waitDone(st.Sent); err != nil {
		return st, err
	}
	if v2 {
		if err := w.waitInstalled(); err != nil {
			return st, err
		}
		st.Installed = true
	}
	return st, nil
}

// offerFiles sends the offer and returns what the receiver holds of each
// file (its resume answer).
func offerFiles(c *conn, fr *frameReader, o *offer) ([]held, error) {
	if _, err := c.Write(appendFrame(nil, frameOffer, appendOffer(nil, o))); err != nil {
		return nil, err
	}
	typ, body, err := fr.next()
	if err != nil {
		return nil, err
	}
	switch typ {
	case frameResume:
	case frameError:
		err := decodeError(body)
		if r, _ := errorReason(body); r == reasonBadStream || r == reasonVersion {
			err = fmt.Errorf("%w: %w", ErrOfferRefused, err)
		}
		return nil, err
	default:
		return nil, badf("%s frame in answer to the offer", frameName(typ))
	}
	return decodeResume(body, o.files)
}

// resumePoints returns, per file, the offset the sender starts from (what
// the receiver holds, if its CRC matches this side's file, else 0) and the
// CRC-32C of the bytes before it. The CRCs of whole files are in the
// manifest, except in version 2 (v2), where they are computed here.
func resumePoints(dir string, files []FileInfo, hs []held, v2 bool, log *slog.Logger) ([]int64, []uint32, error) {
	starts := make([]int64, len(files))
	crcs := make([]uint32, len(files))
	for i, f := range files {
		h := hs[i]
		if h.n == 0 {
			continue
		}
		want := f.CRC
		if h.n < f.Size || v2 {
			var err error
			if _, want, err = fileCRC(filepath.Join(dir, f.Name), h.n); err != nil {
				return nil, nil, err
			}
		}
		if h.crc != want {
			log.Warn("snapshot: the receiver's copy of a file differs; sending it again", "file", f.Name, "held", h.n)
			continue
		}
		starts[i], crcs[i] = h.n, want
	}
	return starts, crcs, nil
}

// sendFile sends file number i from offset start in chunks of len(buf). If
// crc is not nil (version 2) it holds the CRC-32C of the bytes before start;
// the data sent is added to it, and a file-end frame carrying it follows
// the chunks (even when none was needed).
func sendFile(ctx context.Context, c *conn, w *window, dir string, i uint32, f FileInfo, start int64, crc *uint32, buf, hdr []byte, sent func(int64)) error {
	if start >= f.Size {
		return sendFileEnd(c, i, crc)
	}
	fh, err := os.Open(filepath.Join(dir, f.Name))
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	defer fh.Close()
	for off := start; off < f.Size; {
		n := int(min(int64(len(buf)), f.Size-off))
		if _, err := fh.ReadAt(buf[:n], off); err != nil {
			return fmt.Errorf("snapshot: reading %s at %d: %w", f.Name, off, err)
		}
		if err := w.reserve(ctx, int64(n)); err != nil {
			return err
		}
		putChunkHeader(hdr, i, uint64(off), buf[:n])
		if crc != nil {
			*crc = crc32.Update(*crc, castagnoli, buf[:n])
		}
		bufs := net.Buffers{hdr, buf[:n]}
		if _, err := bufs.WriteTo(c); err != nil {
			return err
		}
		off += int64(n)
		sent(int64(n))
	}
	return sendFileEnd(c, i, crc)
}

// sendFileEnd sends file i's file-end frame, if crc is not nil.
func sendFileEnd(c *conn, i uint32, crc *uint32) error {
	if crc == nil {
		return nil
	}
	_, err := c.Write(appendFrame(nil, frameFileEnd, appendFileEnd(nil, i, *crc)))
	return err
}

// putChunkHeader fills hdr with the frame and chunk headers of a chunk
// carrying data.
func putChunkHeader(hdr []byte, file uint32, off uint64, data []byte) {
	le := binary.LittleEndian
	hdr[0] = frameChunk
	le.PutUint32(hdr[1:], uint32(chunkHeaderSize+len(data)))
	le.PutUint32(hdr[frameHeaderSize:], file)
	le.PutUint64(hdr[frameHeaderSize+4:], off)
	crc := crc32.Checksum(hdr[:5], castagnoli)
	crc = crc32.Update(crc, castagnoli, hdr[frameHeaderSize:])
	crc = crc32.Update(crc, castagnoli, data)
	le.PutUint32(hdr[5:], crc)
}

// ackEvent is what the receiver said: bytes acknowledged, done, installed,
// or an error.
type ackEvent struct {
	acked     uint64
	done      bool
	installed bool
	err       error
}

// readAcks reads the receiver's frames into acks until an error or done
// (v2: until the installed frame or an error after done), or until quit is
// closed.
func readAcks(fr *frameReader, acks chan<- ackEvent, quit <-chan struct{}, v2 bool) {
	put := func(ev ackEvent) {
		select {
		case acks <- ev:
		case <-quit:
		}
	}
	for {
		typ, body, err := fr.next()
		if err != nil {
			put(ackEvent{err: err})
			return
		}
		switch typ {
		case frameAck:
			n, err := decodeAck(body)
			put(ackEvent{acked: n, err: err})
			if err != nil {
				return
			}
		case frameDone:
			if len(body) != 0 {
				put(ackEvent{err: badf("done frame of %d bytes", len(body))})
				return
			}
			put(ackEvent{done: true})
			if v2 {
				readInstalled(fr, put)
			}
			return
		case frameError:
			put(ackEvent{err: decodeError(body)})
			return
		default:
			put(ackEvent{err: badf("unexpected %s frame from the receiver", frameName(typ))})
			return
		}
	}
}

// readInstalled reads the receiver's answer after done: installed, or an
// error frame (its install failed, or it was not needed).
func readInstalled(fr *frameReader, put func(ackEvent)) {
	typ, body, err := fr.next()
	switch {
	case err != nil:
		if errors.Is(err, io.EOF) {
			err = fmt.Errorf("%w: the receiver hung up after done without reporting its install", ErrNotInstalled)
		}
		put(ackEvent{err: err})
	case typ == frameInstalled:
		put(ackEvent{installed: true})
	case typ == frameError:
		put(ackEvent{err: decodeError(body)})
	default:
		put(ackEvent{err: badf("unexpected %s frame from the receiver after done", frameName(typ))})
	}
}

// window keeps the unacknowledged chunk data under a limit.
type window struct {
	acks  <-chan ackEvent
	limit int64
	sent  int64 // chunk data sent
	acked int64
	done  bool
}

// take applies one event from the receiver.
func (w *window) take(ev ackEvent) error {
	switch {
	case ev.err != nil:
		return ev.err
	case ev.done:
		w.done = true
	case int64(ev.acked) < w.acked || int64(ev.acked) > w.sent:
		return badf("ack of %d bytes, after %d acknowledged and %d sent", ev.acked, w.acked, w.sent)
	default:
		w.acked = int64(ev.acked)
	}
	return nil
}

// reserve waits until n more bytes fit in the window, and counts them sent.
func (w *window) reserve(ctx context.Context, n int64) error {
	for w.sent-w.acked+n > w.limit {
		select {
		case ev := <-w.acks:
			if err := w.take(ev); err != nil {
				return err
			}
			if w.done {
				return badf("receiver said done with %d bytes unacknowledged", w.sent-w.acked)
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	w.sent += n
	return nil
}

// refusal returns the receiver's refusal if one arrives within d.
func (w *window) refusal(d time.Duration) error {
	timeout := time.After(d)
	for {
		select {
		case ev := <-w.acks:
			if errors.Is(ev.err, ErrRefused) {
				return ev.err
			}
			if ev.err != nil {
				return nil
			}
		case <-timeout:
			return nil
		}
	}
}

// waitDone waits for the receiver's done, after every byte was acknowledged.
func (w *window) waitDone(sent int64) error {
	for !w.done {
		if err := w.take(<-w.acks); err != nil {
			return err
		}
	}
	if w.acked != sent {
		return badf("receiver said done after acknowledging %d of %d bytes", w.acked, sent)
	}
	return nil
}

// waitInstalled waits, after done, for the receiver's report of its install.
func (w *window) waitInstalled() error {
	ev := <-w.acks
	if ev.err != nil {
		return ev.err
	}
	if !ev.installed {
		return badf("unexpected event from the receiver after done")
	}
	return nil
}
