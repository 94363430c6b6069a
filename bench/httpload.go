package bench

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"time"
)

// httpDoer writes with PUT /v1/kv/KEY and reads with GET on one kept-alive
// HTTP/1.1 connection of its own (a Transport per worker, at most one
// connection).
type httpDoer struct {
	hc         *http.Client
	tr         *http.Transport
	base       string // "http://host:port/v1/kv/"
	writeQuery string // e.g. "?ack=majority"
	readQuery  string // e.g. "?consistency=linearizable&raw=1"
	// idem: every write carries a fresh Idempotency-Key of 128 random
	// bits in hex, as the Go client sends.
	idem bool
	rng  *rand.ChaCha8
	key  [16]byte
	hexK [32]byte
}

// newHTTPDoer returns a doer on the node at addr (host:port).
func newHTTPDoer(addr, writeQuery, readQuery string, idem bool) *httpDoer {
	tr := &http.Transport{MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1, MaxIdleConns: 1, DisableCompression: true,
		IdleConnTimeout: time.Minute, ResponseHeaderTimeout: 30 * time.Second}
	var seed [32]byte
	crand.Read(seed[:])
	return &httpDoer{hc: &http.Client{Transport: tr}, tr: tr, base: "http://" + addr + "/v1/kv/",
		writeQuery: writeQuery, readQuery: readQuery, idem: idem, rng: rand.NewChaCha8(seed)}
}

// idempotencyKey returns a fresh random key.
func (d *httpDoer) idempotencyKey() string {
	d.rng.Read(d.key[:])
	hex.Encode(d.hexK[:], d.key[:])
	return string(d.hexK[:])
}

func (d *httpDoer) Write(ctx context.Context, key string, value []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, d.base+url.PathEscape(key)+d.writeQuery, bytes.NewReader(value))
	if err != nil {
		return err
	}
	if d.idem {
		req.Header.Set("Idempotency-Key", d.idempotencyKey())
	}
	return d.do(req)
}

func (d *httpDoer) Read(ctx context.Context, key string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.base+url.PathEscape(key)+d.readQuery, nil)
	if err != nil {
		return err
	}
	return d.do(req)
}

// do sends req and reads the whole reply, so that the connection is
// reused; a status other than 200 is an error quoting the reply.
func (d *httpDoer) do(req *http.Request) error {
	resp, err := d.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		_, err = io.Copy(io.Discard, resp.Body)
		return err
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
	io.Copy(io.Discard, resp.Body)
	return fmt.Errorf("%s %s: %s: %s", req.Method, req.URL.Path, resp.Status, bytes.TrimSpace(b))
}

func (d *httpDoer) Close() error {
	d.tr.CloseIdleConnections()
	return nil
}

// httpVariant opens every worker's doer on the node at addr().
func httpVariant(system, name string, addr func() string, writeQuery, readQuery string, idem bool, pids func() []int) Variant {
	return Variant{System: system, Name: name, Pids: pids, Open: func(ctx context.Context, i, n int) (Doer, error) {
		return newHTTPDoer(addr(), writeQuery, readQuery, idem), nil
	}}
}
