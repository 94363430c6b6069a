package main

import (
	"strings"
	"testing"

	"github.com/trireme-db/trireme/internal/api/apitest"
)

func TestPutGetSession(t *testing.T) {
	f := apitest.NewFake("n2")
	url := mustNode(t, f)

	code, out, errOut := runCLI("put", "k", "v1", "-v", "--endpoints", url)
	if code != 0 || !strings.HasPrefix(out, "OK index=1 ") || errOut != "session=1.1.1\n" {
		t.Fatalf("put -v: %d %q %q", code, out, errOut)
	}
	// Without -v, no token.
	if code, _, errOut = runCLI("put", "other", "x", "--endpoints", url); code != 0 || errOut != "" {
		t.Fatalf("put: %d %q", code, errOut)
	}
	for _, args := range [][]string{
		{"get", "k", "--session", "1.1.1"},
		{"get", "k", "--consistency", "session", "--session", "1.1.1"},
		{"get", "k", "--consistency", "session"},
		{"get", "k", "-v"},
	} {
		code, out, errOut = runCLI(append(args, "--endpoints", url)...)
		if code != 0 || out != "v1\n" || errOut != "session=1.1.2\n" {
			t.Fatalf("%q: %d %q %q, want v1 and session=1.1.2", args, code, out, errOut)
		}
	}
	code, out, errOut = runCLI("get", "k", "--max-lag", "100ms", "--endpoints", url)
	if code != 0 || out != "v1\n" || !strings.Contains(errOut, "lag 0 entries") {
		t.Fatalf("get --max-lag: %d %q %q", code, out, errOut)
	}
	// A missing key: the session has read its absence.
	code, _, errOut = runCLI("get", "absent", "--session", "1.1.1", "--endpoints", url)
	if code != 1 || !strings.Contains(errOut, "key not found") || !strings.Contains(errOut, "session=1.1.2\n") {
		t.Fatalf("get absent --session: %d %q", code, errOut)
	}
	code, _, errOut = runCLI("get", "k", "--session", "1.banana", "--endpoints", url)
	if code != 1 || !strings.Contains(errOut, "malformed session token") {
		t.Fatalf("get with a bad token: %d %q", code, errOut)
	}
}

func TestGetFlagsRefused(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		mention string
	}{
		{[]string{"get", "k", "--consistency", "stale", "--session", "1.1.1"}, "--session applies to --consistency session only"},
		{[]string{"get", "k", "--consistency", "bounded"}, "needs --max-lag"},
		{[]string{"get", "k", "--consistency", "session", "--max-lag", "1s"}, "apply to --consistency bounded only"},
		{[]string{"get", "k", "--session", "1.1.1", "--max-lag-entries", "3"}, "exclude each other"},
		{[]string{"get", "k", "--consistency", "eventual"}, "want linearizable, stale, session, bounded or local"},
		{[]string{"get", "k", "--node", "n2"}, "--node applies to"},
		{[]string{"put", "k", "v", "--if-index", "x"}, "if-index"},
		{[]string{"del", "k", "--if-index", "-1"}, "if-index"},
	} {
		code, _, errOut := runCLI(append(tc.args, "--endpoints", "127.0.0.1:1")...)
		if code != 2 || !strings.Contains(errOut, tc.mention) {
			t.Errorf("%q: %d %q, want exit 2 mentioning %q", tc.args, code, errOut, tc.mention)
		}
	}
}

func TestPutDelIfIndex(t *testing.T) {
	f := apitest.NewFake("n2")
	url := mustNode(t, f)
	if code, out, errOut := runCLI("put", "k", "v1", "--if-index", "0", "--endpoints", url); code != 0 {
		t.Fatalf("put --if-index 0: %d %q %q", code, out, errOut)
	}
	code, _, errOut := runCLI("put", "k", "v2", "--if-index", "0", "--endpoints", url)
	if code != 1 || !strings.Contains(errOut, "the key is at index 1") {
		t.Fatalf("put --if-index 0 of an existing key: %d %q", code, errOut)
	}
	if code, out, errOut := runCLI("put", "k", "v2", "--if-index", "1", "--endpoints", url); code != 0 || !strings.HasPrefix(out, "OK index=3") {
		t.Fatalf("put --if-index 1: %d %q %q", code, out, errOut)
	}
	if v, _ := f.Value("k"); string(v) != "v2" {
		t.Fatalf("k = %q", v)
	}
	code, _, errOut = runCLI("del", "k", "--if-index", "1", "--endpoints", url)
	if code != 1 || !strings.Contains(errOut, "the key is at index 3") {
		t.Fatalf("del --if-index 1: %d %q", code, errOut)
	}
	if code, _, errOut := runCLI("del", "k", "--if-index", "3", "--endpoints", url); code != 0 {
		t.Fatalf("del --if-index 3: %d %q", code, errOut)
	}
	if _, ok := f.Value("k"); ok {
		t.Fatal("k survived its delete")
	}
}
