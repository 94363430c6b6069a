package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/trireme-db/trireme/internal/api"
	"github.com/trireme-db/trireme/internal/api/apitest"
	"github.com/trireme-db/trireme/internal/api/httpapi"
)

// readLog records, per endpoint, the session token of each read it served.
type readLog struct {
	mu     sync.Mutex
	tokens map[string][]string // endpoint -> session= of each GET
}

func (l *readLog) reads(ep string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.tokens[ep]...)
}

// mustNodes serves f's API on n endpoints, as n nodes in sync would, and
// records their reads.
func mustNodes(t *testing.T, f *apitest.Fake, n int) ([]string, *readLog) {
	t.Helper()
	log := &readLog{tokens: map[string][]string{}}
	h := httpapi.New(f, nil, nil)
	var eps []string
	for range n {
		var url string
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && r.URL.Query().Get("consistency") == "session" {
				log.mu.Lock()
				log.tokens[url] = append(log.tokens[url], r.URL.Query().Get("session"))
				log.mu.Unlock()
			}
			h.ServeHTTP(w, r)
		}))
		t.Cleanup(srv.Close)
		url = srv.URL
		eps = append(eps, url)
	}
	return eps, log
}

func TestSession(t *testing.T) {
	f := apitest.NewFake("n2")
	eps, log := mustNodes(t, f, 2)
	c := mustClient(t, eps...)
	ctx := context.Background()
	s := c.Session()
	if s.Token() != "" {
		t.Fatalf("a new session has token %q", s.Token())
	}
	if _, err := s.Put(ctx, []byte("k"), []byte("v1"), WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if s.Token() != "1.1.1" {
		t.Fatalf("token after a write: %q, want 1.1.1", s.Token())
	}
	// Another client's write moves the cluster on; the session's reads
	// carry its token, and learn the newer one.
	if _, err := f.Put(ctx, []byte("other"), []byte("x"), api.WriteOptions{Default: true}); err != nil {
		t.Fatal(err)
	}
	for range 4 {
		r, err := s.Get(ctx, []byte("k"))
		if err != nil || string(r.Value) != "v1" || r.Session != "1.1.2" {
			t.Fatalf("session Get: %+v %v", r, err)
		}
	}
	if s.Token() != "1.1.2" {
		t.Fatalf("token after reads: %q, want 1.1.2", s.Token())
	}
	// Round-robin: each endpoint served two reads; the first carried the
	// write's token, the later ones the newest.
	a, b := log.reads(eps[0]), log.reads(eps[1])
	if fmt.Sprint(a) != "[1.1.1 1.1.2]" || fmt.Sprint(b) != "[1.1.2 1.1.2]" {
		t.Fatalf("tokens of the reads per endpoint: %q and %q, want [1.1.1 1.1.2] and [1.1.2 1.1.2]", a, b)
	}
	// A missing key and a failed condition carry tokens too.
	if _, err := f.Put(ctx, []byte("other"), []byte("y"), api.WriteOptions{Default: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, []byte("absent")); !errors.Is(err, ErrNotFound) || s.Token() != "1.1.3" {
		t.Fatalf("Get of an absent key: %v, token %q, want ErrNotFound and 1.1.3", err, s.Token())
	}
	if _, err := s.PutIfIndex(ctx, []byte("k"), []byte("v2"), 0, WriteOptions{}); !errors.Is(err, ErrConditionFailed) || s.Token() != "1.1.4" {
		t.Fatalf("PutIfIndex: %v, token %q, want ErrConditionFailed and 1.1.4", err, s.Token())
	}
	if n, err := s.Incr(ctx, []byte("n"), 2); err != nil || n != 2 || s.Token() != "1.1.5" {
		t.Fatalf("Incr: %d %v, token %q", n, err, s.Token())
	}
}

// A session's token never goes back, and it can be carried to another
// client.
func TestSessionTokenIsMonotonic(t *testing.T) {
	f := apitest.NewFake("n2")
	c := mustClient(t, mustNode(t, f))
	s, err := c.ResumeSession("1.3.40")
	if err != nil {
		t.Fatal(err)
	}
	s.observe([]byte(`{"session":"1.3.39"}`), nil)
	s.observe([]byte(`{"session":"1.2.41"}`), nil)
	s.observe([]byte(`{"session":"garbage"}`), nil)
	s.observe([]byte(`{"session":"1.9.99"}`), ErrOutcomeUnknown)
	if s.Token() != "1.2.41" {
		t.Fatalf("token %q, want 1.2.41", s.Token())
	}
	if _, err := c.ResumeSession("not-a-token"); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("ResumeSession of junk: %v, want ErrBadRequest", err)
	}
	if s, err := c.ResumeSession(""); err != nil || s.Token() != "" {
		t.Fatalf("ResumeSession(\"\"): %v %v", s, err)
	}
}

func TestSessionRolledBack(t *testing.T) {
	f := apitest.NewFake("n2")
	c := mustClient(t, mustNode(t, f))
	ctx := context.Background()
	s := c.Session()
	if _, err := s.Put(ctx, []byte("k"), []byte("v"), WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	f.FailNext(api.ErrRolledBack)
	if _, err := s.Get(ctx, []byte("k")); !errors.Is(err, ErrRolledBack) {
		t.Fatalf("session read of a rolled back write: %v, want ErrRolledBack", err)
	}
	// The session's writes carry its token, and are refused alike.
	tok := s.Token()
	if _, err := s.Put(ctx, []byte("k"), []byte("w"), WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if w, _ := f.LastWrite(); w.Session.String() != tok {
		t.Fatalf("the session's write carried %v, want %s", w.Session, tok)
	}
	f.FailNext(api.ErrRolledBack)
	if _, err := s.Incr(ctx, []byte("n"), 1); !errors.Is(err, ErrRolledBack) {
		t.Fatalf("session write after a lost one: %v, want ErrRolledBack", err)
	}
}

func TestSessionAndBoundedGet(t *testing.T) {
	f := apitest.NewFake("n2")
	ep := mustNode(t, f)
	c := mustClient(t, ep)
	ctx := context.Background()
	res, err := c.Put(ctx, []byte("k"), []byte("v"), WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range []ReadOptions{
		{Consistency: "session", Session: res.Session},
		{Consistency: "session", Session: res.Session, Endpoint: ep},
		{Consistency: "bounded", MaxLag: 100 * time.Millisecond},
		{Consistency: "bounded", MaxLagEntries: 5},
	} {
		if r, err := c.Get(ctx, []byte("k"), o); err != nil || string(r.Value) != "v" || r.Session != res.Session {
			t.Fatalf("Get %+v: %+v %v", o, r, err)
		}
	}
	for _, o := range []ReadOptions{
		{Consistency: "session", Session: "1.x"},
		{Consistency: "bounded"},
		{Consistency: "stale", Session: res.Session},
	} {
		if _, err := c.Get(ctx, []byte("k"), o); !errors.Is(err, ErrBadRequest) {
			t.Fatalf("Get %+v: %v, want ErrBadRequest", o, err)
		}
	}
}
