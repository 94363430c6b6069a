package httpapi

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/trireme-db/trireme/internal/api/apitest"
)

// BenchmarkHTTPPut measures the HTTP layer's cost per write (parsing, the
// body read, JSON reply) over a kept-alive loopback connection, against the
// in-memory fake service.
func BenchmarkHTTPPut(b *testing.B) {
	f := apitest.NewFake("n2", "n3")
	srv := httptest.NewServer(New(f, nil, nil))
	defer srv.Close()
	c := srv.Client()
	val := bytes.Repeat([]byte("v"), 100)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		req, _ := http.NewRequest("PUT", fmt.Sprintf("%s/v1/kv/key-%d?ack=majority", srv.URL, i%1000), bytes.NewReader(val))
		resp, err := c.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}
