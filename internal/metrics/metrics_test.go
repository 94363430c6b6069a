package metrics

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestRegistryLabelsAndServes(t *testing.T) {
	for _, shared := range []bool{false, true} {
		var base prometheus.Registerer
		if shared {
			base = prometheus.NewRegistry()
		}
		reg, h := Registry(base, "n7")
		c := prometheus.NewCounter(prometheus.CounterOpts{Namespace: "trireme", Name: "test_total", Help: "A test counter."})
		if err := reg.Register(c); err != nil {
			t.Fatal(err)
		}
		c.Add(3)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		body, _ := io.ReadAll(rec.Body)
		if !strings.Contains(string(body), `trireme_test_total{node="n7"} 3`) {
			t.Fatalf("shared=%v: /metrics lacks the labelled counter:\n%s", shared, body)
		}
	}
}
