package httpapi

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/trireme-db/trireme/internal/api"
	"github.com/trireme-db/trireme/internal/api/apitest"
)

// readReplyOf decodes a JSON read reply.
func readReplyOf(t *testing.T, b []byte) ReadReply {
	t.Helper()
	var r ReadReply
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("reply is not a read reply: %q: %v", b, err)
	}
	return r
}

// A multi-leader read gives its context (JSON and header) and, for a key
// with several values, every one of them; a single-leader read, and a key
// with one value, read as before.
func TestReadSiblingsAndContext(t *testing.T) {
	f := apitest.NewFake("n2")
	srv := mustServer(t, f)
	c := srv.Client()
	mustDo(t, c, "PUT", srv.URL+"/v1/kv/plain", []byte("v"))

	// Single-leader: no context, no siblings.
	code, b, h := mustDo(t, c, "GET", srv.URL+"/v1/kv/plain", nil)
	if m := mustJSON(t, b); code != 200 || m["context"] != nil || m["siblings"] != nil || h.Get(ContextHeader) != "" {
		t.Fatalf("single-leader read: %d %s %v", code, b, h)
	}

	f.SetReadContext("ctx-1")
	f.SetSiblings("k",
		api.Sibling{Value: []byte("left"), Node: "n1", Counter: 3, Time: "100.0"},
		api.Sibling{Value: []byte{0xff, 0x00}, Node: "n2", Counter: 7, Time: "101.2"})
	code, b, h = mustDo(t, c, "GET", srv.URL+"/v1/kv/k", nil)
	r := readReplyOf(t, b)
	if code != 200 || r.Value != "left" || r.Context != "ctx-1" || h.Get(ContextHeader) != "ctx-1" {
		t.Fatalf("read of siblings: %d %s %v", code, b, h)
	}
	want := []SiblingReply{
		{Value: "left", Dot: "n1:3", Node: "n1", Time: "100.0"},
		{Value: base64.StdEncoding.EncodeToString([]byte{0xff, 0x00}), Encoding: "base64", Dot: "n2:7", Node: "n2", Time: "101.2"},
	}
	if fmt.Sprint(r.Siblings) != fmt.Sprint(want) {
		t.Fatalf("siblings %+v, want %+v", r.Siblings, want)
	}
	if h.Get(SiblingsHeader) != "" {
		t.Fatalf("a JSON read has header %s: %v", SiblingsHeader, h)
	}

	// Raw: the first value, the context and the number of values.
	code, b, h = mustDo(t, c, "GET", srv.URL+"/v1/kv/k?raw=1", nil)
	if code != 200 || string(b) != "left" || h.Get(ContextHeader) != "ctx-1" || h.Get(SiblingsHeader) != "2" {
		t.Fatalf("raw read of siblings: %d %q %v", code, b, h)
	}

	// One value: the context only.
	f.SetSiblings("one", api.Sibling{Value: []byte("only"), Node: "n1", Counter: 1, Time: "1.0"})
	for _, path := range []string{"/v1/kv/one", "/v1/kv/plain"} {
		code, b, h = mustDo(t, c, "GET", srv.URL+path, nil)
		if m := mustJSON(t, b); code != 200 || m["siblings"] != nil || m["context"] != "ctx-1" || h.Get(ContextHeader) != "ctx-1" {
			t.Fatalf("GET %s: %d %s %v", path, code, b, h)
		}
		code, _, h = mustDo(t, c, "GET", srv.URL+path+"?raw=1", nil)
		if code != 200 || h.Get(SiblingsHeader) != "" || h.Get(ContextHeader) != "ctx-1" {
			t.Fatalf("raw GET %s: %d %v", path, code, h)
		}
	}

	// Not found: the context too, for a write that follows.
	code, b, h = mustDo(t, c, "GET", srv.URL+"/v1/kv/absent", nil)
	if m := mustJSON(t, b); code != 404 || m["context"] != "ctx-1" || h.Get(ContextHeader) != "ctx-1" {
		t.Fatalf("read of a missing key: %d %s %v", code, b, h)
	}

	// A write replaces the siblings.
	mustDo(t, c, "PUT", srv.URL+"/v1/kv/k", []byte("merged"))
	if _, b, _ = mustDo(t, c, "GET", srv.URL+"/v1/kv/k", nil); readReplyOf(t, b).Siblings != nil {
		t.Fatalf("siblings after a write: %s", b)
	}
}

// Every kind of write passes its causal context, from the header or from
// context=, to the service.
func TestWriteContext(t *testing.T) {
	f := apitest.NewFake("n2")
	srv := mustServer(t, f)
	c := srv.Client()
	tok := "opaque+/=token"
	for _, tc := range []struct {
		method, target string
		headers        []string
	}{
		{"PUT", "/v1/kv/k", []string{ContextHeader + ": " + tok}},
		{"PUT", "/v1/kv/k?context=" + url.QueryEscape(tok), nil},
		{"PUT", "/v1/kv/k?context=" + url.QueryEscape(tok), []string{ContextHeader + ": " + tok}},
		{"DELETE", "/v1/kv/k?ack=async", []string{ContextHeader + ": " + tok}},
		{"DELETE", "/v1/kv/k?context=" + url.QueryEscape(tok) + "&if_index=0", nil},
		{"POST", "/v1/kv/n?op=incr&context=" + url.QueryEscape(tok), nil},
		{"POST", "/v1/kv/a?op=append", []string{ContextHeader + ": " + tok}},
		{"PUT", "/v1/kv/k?context=" + url.QueryEscape(strings.Repeat("c", MaxContextBytes)), nil},
	} {
		var body []byte
		if !strings.Contains(tc.target, "op=incr") {
			body = []byte("1")
		}
		code, b, _ := mustDoH(t, c, tc.method, srv.URL+tc.target, body, tc.headers...)
		w, _ := f.LastWrite()
		want := tok
		if strings.Contains(tc.target, "ccc") {
			want = strings.Repeat("c", MaxContextBytes)
		}
		if code != 200 || w.Context != want {
			t.Fatalf("%s %.80s %v: %d %s, the service got context %.80q", tc.method, tc.target, tc.headers, code, b, w.Context)
		}
	}
	// No context: a blind write.
	if code, b, _ := mustDo(t, c, "PUT", srv.URL+"/v1/kv/k", []byte("v")); code != 200 {
		t.Fatalf("PUT: %d %s", code, b)
	}
	if w, _ := f.LastWrite(); w.Context != "" {
		t.Fatalf("a write without a context passed %q", w.Context)
	}
}

// Contexts that differ, repeat or are too long are refused before the
// service sees the write; an oversized header before the query is parsed.
func TestBadWriteContext(t *testing.T) {
	f := apitest.NewFake("n2")
	srv := mustServer(t, f)
	c := srv.Client()
	long := strings.Repeat("c", MaxContextBytes+1)
	for _, tc := range []struct {
		method, target string
		headers        []string
		mention        string
	}{
		{"PUT", "/v1/kv/k?context=a", []string{ContextHeader + ": b"}, "differ"},
		{"POST", "/v1/kv/k?op=append&context=a", []string{ContextHeader + ": "}, "differ"},
		{"DELETE", "/v1/kv/k", []string{ContextHeader + ": a", ContextHeader + ": a"}, "more than once"},
		{"PUT", "/v1/kv/k", []string{ContextHeader + ": " + long}, ContextHeader},
		{"PUT", "/v1/kv/k?context=" + long, nil, "context="},
		{"POST", "/v1/kv/k?op=incr&context=" + long, nil, "at most 4096"},
		{"PUT", "/v1/kv/k?acks=sync&ack=x", []string{ContextHeader + ": " + long}, ContextHeader},
		{"PUT", "/v1/kv/k?context=a&context=a", nil, "more than once"},
		{"GET", "/v1/kv/k?context=a", nil, `"context"`},
	} {
		code, b, _ := mustDoH(t, c, tc.method, srv.URL+tc.target, []byte("v"), tc.headers...)
		if e, _ := mustJSON(t, b)["error"].(string); code != http.StatusBadRequest || !strings.Contains(e, tc.mention) {
			t.Fatalf("%s %.60s %.60q: %d %.200s, want 400 naming %s", tc.method, tc.target, tc.headers, code, b, tc.mention)
		}
	}
	if _, n := f.LastWrite(); n != 0 {
		t.Fatalf("the service saw %d writes", n)
	}
	// The engine's own refusal.
	f.FailNext(fmt.Errorf("%w: from another cluster", api.ErrBadContext))
	if code, b, _ := mustDoH(t, c, "PUT", srv.URL+"/v1/kv/k", []byte("v"), ContextHeader+": x"); code != http.StatusBadRequest ||
		!strings.Contains(string(b), "invalid causal context") {
		t.Fatalf("ErrBadContext: %d %s", code, b)
	}
}

// The multi-leader ack words reach the service; a numeric ack is the
// replica count, so replicas= cannot go with it.
func TestAckWords(t *testing.T) {
	f := apitest.NewFake("n2", "n3", "n4")
	srv := mustServer(t, f)
	for _, tc := range []struct {
		query string
		want  api.Ack
	}{
		{"ack=local", api.Ack{Mode: api.AckAsync}},
		{"ack=all", api.Ack{Mode: api.AckSync}},
		{"ack=3", api.Ack{Mode: api.AckSemiSync, Replicas: 3}},
		{"ack=1&timeout=1s", api.Ack{Mode: api.AckSemiSync, Replicas: 1}},
	} {
		for _, method := range []string{"PUT", "DELETE", "POST"} {
			code, b, _ := mustDo(t, srv.Client(), method, srv.URL+"/v1/kv/k?"+tc.query, []byte("v"))
			if w, _ := f.LastWrite(); code != 200 || w.Default || w.Ack != tc.want {
				t.Fatalf("%s ?%s: %d %s, the service got %+v, want %+v", method, tc.query, code, b, w, tc.want)
			}
		}
	}
	_, before := f.LastWrite()
	for _, tc := range []struct{ query, mention string }{
		{"ack=3&replicas=2", "replica count already"},
		{"ack=local&replicas=2", "applies only to ack=semi-sync, not local"},
		{"ack=all&replicas=1", "applies only to ack=semi-sync, not all"},
		{"ack=0", "from 1 to 1000"},
		{"ack=1001", "from 1 to 1000"},
		{"ack=99999999999999999999", "from 1 to 1000"},
		{"ack=-3", "unknown ack mode"},
		{"ack=LOCAL", "unknown ack mode"},
	} {
		code, b, _ := mustDo(t, srv.Client(), "PUT", srv.URL+"/v1/kv/k?"+tc.query, []byte("v"))
		if e, _ := mustJSON(t, b)["error"].(string); code != http.StatusBadRequest || !strings.Contains(e, tc.mention) {
			t.Fatalf("?%s: %d %s, want 400 naming %q", tc.query, code, b, tc.mention)
		}
	}
	if _, n := f.LastWrite(); n != before {
		t.Fatalf("refused acks reached the service: %d writes", n-before)
	}
}

// conflictsOf decodes a /v1/conflicts reply.
func conflictsOf(t *testing.T, b []byte) ConflictsReply {
	t.Helper()
	var r ConflictsReply
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("reply is not a conflicts reply: %q: %v", b, err)
	}
	return r
}

func mustConflicts(t *testing.T, srv string, query string) ConflictsReply {
	t.Helper()
	code, b, _ := mustDo(t, http.DefaultClient, "GET", srv+"/v1/conflicts"+query, nil)
	if code != 200 {
		t.Fatalf("GET /v1/conflicts%s: %d %s", query, code, b)
	}
	if !strings.Contains(string(b), `"conflicts":[`) {
		t.Fatalf("GET /v1/conflicts%s: conflicts is not an array: %s", query, b)
	}
	return conflictsOf(t, b)
}

// /v1/conflicts pages through the conflict log, oldest first, and says
// how many records the node dropped.
func TestConflicts(t *testing.T) {
	f := apitest.NewFake("n2")
	srv := mustServer(t, f)

	if r := mustConflicts(t, srv.URL, ""); len(r.Conflicts) != 0 || r.Next != 0 || r.Dropped != 0 {
		t.Fatalf("empty log: %+v", r)
	}
	f.AddConflict(api.ConflictRecord{Node: "n1", Key: []byte("k"), Reason: "concurrent writes; siblings kept",
		Versions: []api.ConflictVersion{
			{Dot: "n1:1", Node: "n1", Time: "10.0", Value: []byte("a")},
			{Dot: "n2:4", Node: "n2", Time: "11.0", Value: []byte{0xff}},
		}})
	f.AddConflict(api.ConflictRecord{Node: "n2", Key: []byte{0x00, 0xfe}, Winner: "n2:5", Losers: []string{"n1:2"}, Reason: "last writer wins",
		Versions: []api.ConflictVersion{
			{Dot: "n1:2", Node: "n1", Time: "12.0", Deleted: true},
			{Dot: "n2:5", Node: "n2", Time: "12.1", Value: []byte("b")},
		}})
	for range 3 {
		f.AddConflict(api.ConflictRecord{Node: "n1", Key: []byte("more")})
	}

	r := mustConflicts(t, srv.URL, "")
	if len(r.Conflicts) != 5 || r.Next != 5 || r.Dropped != 0 {
		t.Fatalf("the whole log: %+v", r)
	}
	first := ConflictReply{Seq: 1, Node: "n1", Key: "k", Reason: "concurrent writes; siblings kept", Losers: []string{},
		Versions: []ConflictVersionReply{
			{Dot: "n1:1", Node: "n1", Time: "10.0", Value: "a"},
			{Dot: "n2:4", Node: "n2", Time: "11.0", Value: "/w==", Encoding: "base64"},
		}}
	second := ConflictReply{Seq: 2, Node: "n2", Key: "AP4=", KeyEncoding: "base64", Winner: "n2:5", Losers: []string{"n1:2"}, Reason: "last writer wins",
		Versions: []ConflictVersionReply{
			{Dot: "n1:2", Node: "n1", Time: "12.0", Deleted: true},
			{Dot: "n2:5", Node: "n2", Time: "12.1", Value: "b"},
		}}
	if fmt.Sprintf("%+v", r.Conflicts[:2]) != fmt.Sprintf("%+v", []ConflictReply{first, second}) {
		t.Fatalf("records\n%+v, want\n%+v", r.Conflicts[:2], []ConflictReply{first, second})
	}
	_, b, _ := mustDo(t, http.DefaultClient, "GET", srv.URL+"/v1/conflicts?limit=1", nil)
	if m := mustJSON(t, b); !strings.Contains(string(b), `"deleted":false`) || !strings.Contains(string(b), `"winner":""`) ||
		m["dropped"] != 0.0 || m["next"] != 1.0 {
		t.Fatalf("the fields of a record are not all present: %s", b)
	}

	// Paging.
	for _, tc := range []struct {
		query string
		seqs  string
		next  uint64
	}{
		{"?limit=2", "[1 2]", 2},
		{"?after=2&limit=2", "[3 4]", 4},
		{"?after=4&limit=2", "[5]", 5},
		{"?after=5", "[]", 5},
		{"?after=500&limit=1000", "[]", 500},
	} {
		r := mustConflicts(t, srv.URL, tc.query)
		var seqs []uint64
		for _, c := range r.Conflicts {
			seqs = append(seqs, c.Seq)
		}
		if fmt.Sprint(seqs) != tc.seqs || r.Next != tc.next {
			t.Fatalf("%s: seqs %v next %d, want %s next %d", tc.query, seqs, r.Next, tc.seqs, tc.next)
		}
	}

	// Records dropped from the front are counted; the default limit is 100.
	f.DropConflicts(2)
	for range 200 {
		f.AddConflict(api.ConflictRecord{Node: "n1", Key: []byte("bulk")})
	}
	if r := mustConflicts(t, srv.URL, ""); len(r.Conflicts) != DefaultConflictsLimit || r.Conflicts[0].Seq != 3 ||
		r.Next != 3+DefaultConflictsLimit-1 || r.Dropped != 2 {
		t.Fatalf("after drops, page 1: %d records from %d, next %d, dropped %d", len(r.Conflicts), r.Conflicts[0].Seq, r.Next, r.Dropped)
	}
	if r := mustConflicts(t, srv.URL, "?limit=1000"); len(r.Conflicts) != 203 || r.Next != 205 {
		t.Fatalf("the whole log: %d records, next %d", len(r.Conflicts), r.Next)
	}
}

// Bad parameters and methods are refused; a node that records no
// conflicts answers as api.ErrNotSupported is answered everywhere.
func TestConflictsRefused(t *testing.T) {
	f := apitest.NewFake("n2")
	srv := mustServer(t, f)
	for _, tc := range []struct {
		method, query string
		want          int
		mention       string
	}{
		{"GET", "?limit=0", 400, "limit"},
		{"GET", "?limit=1001", 400, "from 1 to 1000"},
		{"GET", "?limit=x", 400, "limit"},
		{"GET", "?limit=-1", 400, "limit"},
		{"GET", "?after=-1", 400, "after"},
		{"GET", "?after=1.5", 400, "after"},
		{"GET", "?after=18446744073709551616", 400, "after"},
		{"GET", "?after=", 400, "without a value"},
		{"GET", "?after=1&after=2", 400, "more than once"},
		{"GET", "?from=1", 400, "after, limit"},
		{"POST", "", 405, "not allowed"},
		{"DELETE", "", 405, "not allowed"},
	} {
		code, b, _ := mustDo(t, srv.Client(), tc.method, srv.URL+"/v1/conflicts"+tc.query, nil)
		if e, _ := mustJSON(t, b)["error"].(string); code != tc.want || !strings.Contains(e, tc.mention) {
			t.Fatalf("%s /v1/conflicts%s: %d %s, want %d naming %q", tc.method, tc.query, code, b, tc.want, tc.mention)
		}
	}

	// A Service without a conflict log.
	srvSingle := httptest.NewServer(New(struct{ api.Service }{f}, nil, nil))
	t.Cleanup(srvSingle.Close)
	single := srvSingle.URL
	code, b, _ := mustDo(t, http.DefaultClient, "GET", single+"/v1/conflicts", nil)
	e, _ := mustJSON(t, b)["error"].(string)
	if code != api.ClassOf(api.ErrNotSupported).HTTPStatus() || code != http.StatusBadRequest ||
		!strings.Contains(e, api.ErrNotSupported.Error()) {
		t.Fatalf("conflicts of a single-leader node: %d %s", code, b)
	}
	// Its parameters are still checked first.
	if code, b, _ := mustDo(t, http.DefaultClient, "GET", single+"/v1/conflicts?limit=0", nil); code != 400 || !strings.Contains(string(b), "limit") {
		t.Fatalf("a bad limit on a single-leader node: %d %s", code, b)
	}
}
