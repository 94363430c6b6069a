package sim

import (
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/trireme-db/trireme/internal/entry"
	"github.com/trireme-db/trireme/internal/repl"
)

func ent(index, term uint64, key, value string) entry.Entry {
	return entry.Entry{Index: index, Term: term, Kind: entry.KindPut, Key: []byte(key), Value: []byte(value), RequestID: index*100 + term}
}

func TestMemLog(t *testing.T) {
	l := &memLog{}
	if err := l.write(repl.HardState{Term: 1, Vote: "n1"}, []entry.Entry{ent(1, 1, "a", "1"), ent(2, 1, "b", "2"), ent(3, 1, "c", "3")}); err != nil {
		t.Fatal(err)
	}
	old, _ := l.Entries(1, 4, 1<<20)
	// Truncate after index 1 and append a new entry 2.
	if err := l.write(repl.HardState{}, []entry.Entry{ent(2, 2, "x", "9")}); err != nil {
		t.Fatal(err)
	}
	if string(old[1].Key) != "b" {
		t.Fatalf("truncation overwrote a slice handed out earlier: %q", old[1].Key)
	}
	tests := []struct {
		name    string
		lo, hi  uint64
		max     int
		want    int
		wantErr bool
	}{
		{"all", 1, 3, 1 << 20, 2, false},
		{"empty range", 2, 2, 1 << 20, 0, false},
		{"at least one", 1, 3, 1, 1, false},
		{"past the end", 1, 4, 1 << 20, 0, true},
		{"below first", 0, 2, 1 << 20, 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := l.Entries(tc.lo, tc.hi, tc.max)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %t", err, tc.wantErr)
			}
			if tc.wantErr && !errors.Is(err, repl.ErrUnavailable) {
				t.Fatalf("err = %v, want ErrUnavailable", err)
			}
			if len(got) != tc.want {
				t.Fatalf("got %d entries, want %d", len(got), tc.want)
			}
		})
	}
	if tm, err := l.Term(2); err != nil || tm != 2 {
		t.Fatalf("Term(2) = %d, %v; want 2", tm, err)
	}
	if hs, _ := l.InitialState(); hs.Term != 1 || hs.Vote != "n1" {
		t.Fatalf("hard state %+v lost by an append without one", hs)
	}
	if err := l.write(repl.HardState{}, []entry.Entry{ent(5, 2, "gap", "")}); err == nil {
		t.Fatal("append with a gap accepted")
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(c *Config)
		field string
	}{
		{"default", func(*Config) {}, ""},
		{"nodes", func(c *Config) { c.Nodes = 4 }, "Nodes"},
		{"steps", func(c *Config) { c.Steps = 0 }, "Steps"},
		{"delay", func(c *Config) { c.Faults.DelayMin = 0 }, "Faults.DelayMin"},
		{"delay max", func(c *Config) { c.Faults.DelayMax = 0 }, "Faults.DelayMax"},
		{"lease", func(c *Config) { c.Timing.LeaseTicks = c.Timing.ElectionTicks }, "Timing.LeaseTicks"},
		{"max down", func(c *Config) { c.Faults.MaxDown = 3 }, "Faults.MaxDown"},
		{"keys", func(c *Config) { c.Workload.Keys = 0 }, "Workload.Keys"},
		{"bugs", func(c *Config) { c.Bugs.CommitOldTerm = true }, map[bool]string{false: "Bugs", true: ""}[bugsCompiled]},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.edit(&c)
			err := c.Validate()
			if tc.field == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("err = %v, want ErrInvalidConfig naming %s", err, tc.field)
			}
		})
	}
}

// testCluster is a bare cluster for driving the checker directly.
func testCluster(t *testing.T) (*cluster, *simNode, *simNode) {
	cfg := DefaultConfig()
	c := &cluster{cfg: cfg, tr: newTracer(false, 10, slog.New(slog.NewTextHandler(io.Discard, nil)))}
	c.chk = newChecker(c)
	c.wl = newWorkload(c)
	a := &simNode{idx: 0, id: "n1", disk: &memLog{}, sm: newMachine()}
	b := &simNode{idx: 1, id: "n2", disk: &memLog{}, sm: newMachine()}
	a.log, b.log = a.disk, b.disk
	c.nodes = []*simNode{a, b}
	return c, a, b
}

// TestCheckerCatches plants each kind of violation and expects the checker
// to name it.
func TestCheckerCatches(t *testing.T) {
	tests := []struct {
		name      string
		plant     func(c *cluster, a, b *simNode)
		invariant string
	}{
		{"committed entry changed", func(c *cluster, a, b *simNode) {
			c.chk.applied(a, ent(1, 1, "k", "x"))
			c.chk.applied(b, ent(1, 1, "k", "y"))
		}, "committed-changed"},
		{"log matching", func(c *cluster, a, b *simNode) {
			_ = a.disk.write(repl.HardState{}, []entry.Entry{ent(1, 1, "k", "x")})
			c.chk.persisted(a, a.disk.ents)
			_ = b.disk.write(repl.HardState{}, []entry.Entry{ent(1, 1, "k", "other")})
			c.chk.persisted(b, b.disk.ents)
		}, "log-matching"},
		{"log matching prefix", func(c *cluster, a, b *simNode) {
			_ = a.disk.write(repl.HardState{}, []entry.Entry{ent(1, 1, "k", "x"), ent(2, 2, "k", "y")})
			c.chk.persisted(a, a.disk.ents)
			_ = b.disk.write(repl.HardState{}, []entry.Entry{ent(1, 2, "k", "z"), ent(2, 2, "k", "y")})
			c.chk.persisted(b, b.disk.ents)
		}, "log-matching"},
		{"committed discarded", func(c *cluster, a, b *simNode) {
			c.chk.applied(a, ent(1, 1, "k", "x"))
			c.chk.discarded(b, ent(1, 1, "k", "x"))
		}, "committed-discarded"},
		{"leader completeness", func(c *cluster, a, b *simNode) {
			c.chk.applied(a, ent(1, 1, "k", "x"))
			_ = b.disk.write(repl.HardState{}, []entry.Entry{ent(1, 2, "k", "y")})
			c.chk.completeness(b, 2)
		}, "leader-completeness"},
		{"acknowledged write lost", func(c *cluster, a, b *simNode) {
			_ = a.disk.write(repl.HardState{}, []entry.Entry{ent(1, 1, "k", "x")})
			o := &op{id: 7, kind: opPut, ack: repl.Ack{Mode: repl.AckMajority},
				res: repl.Result{Index: 1, Term: 1, Durability: repl.Durability{LeaderDurable: true, Committed: true}}}
			c.chk.acked(a, o)
			c.chk.applied(b, ent(1, 2, "k", "y"))
		}, "acked-lost"},
		{"ack not durable", func(c *cluster, a, b *simNode) {
			o := &op{id: 7, kind: opPut, ack: repl.Ack{Mode: repl.AckAsync}, res: repl.Result{Index: 3, Term: 1}}
			c.chk.acked(a, o)
		}, "ack-not-durable"},
		{"ack weaker than asked", func(c *cluster, a, b *simNode) {
			_ = a.disk.write(repl.HardState{}, []entry.Entry{ent(1, 1, "k", "x")})
			o := &op{id: 7, kind: opPut, ack: repl.Ack{Mode: repl.AckSync},
				res: repl.Result{Index: 1, Term: 1, Durability: repl.Durability{LeaderDurable: true, Replicas: 0}}}
			c.chk.acked(a, o)
		}, "ack-durability"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, a, b := testCluster(t)
			tc.plant(c, a, b)
			if c.err == nil || c.err.Invariant != tc.invariant {
				t.Fatalf("got %v, want invariant %q", c.err, tc.invariant)
			}
		})
	}
}

func TestLinearizabilityCheckCatchesStaleRead(t *testing.T) {
	c, a, _ := testCluster(t)
	w1 := &op{id: 1, kind: opPut, key: "k", value: "v1", state: opOK, call: 1, ret: 2}
	w2 := &op{id: 2, kind: opPut, key: "k", value: "v2", state: opOK, call: 3, ret: 4}
	r := &op{id: 3, kind: opLinRead, key: "k", value: "v1", state: opOK, call: 5, ret: 6}
	c.wl.ops = []*op{w1, w2, r}
	c.seq = 10
	c.chk.applied(a, entry.Entry{Index: 1, Term: 1, Kind: entry.KindPut, Key: []byte("k"), Value: []byte("v1"), RequestID: 1})
	c.chk.applied(a, entry.Entry{Index: 2, Term: 1, Kind: entry.KindPut, Key: []byte("k"), Value: []byte("v2"), RequestID: 2})
	c.chk.linearizable()
	if c.err == nil || c.err.Invariant != "linearizability" || !strings.Contains(c.err.Detail, "stale read: op3") {
		t.Fatalf("got %v, want a linearizability violation naming op3", c.err)
	}
	// The same history with the read returning v2 is fine.
	c2, a2, _ := testCluster(t)
	r2 := *r
	r2.value = "v2"
	c2.wl.ops = []*op{w1, w2, &r2}
	c2.seq = 10
	c2.chk.applied(a2, entry.Entry{Index: 1, Term: 1, Kind: entry.KindPut, Key: []byte("k"), Value: []byte("v1"), RequestID: 1})
	c2.chk.applied(a2, entry.Entry{Index: 2, Term: 1, Kind: entry.KindPut, Key: []byte("k"), Value: []byte("v2"), RequestID: 2})
	c2.chk.linearizable()
	if c2.err != nil {
		t.Fatalf("linearizable history rejected: %v", c2.err)
	}
}

func TestReplayCommand(t *testing.T) {
	got := ReplayCommand(1234, 0, "")
	want := "go test ./internal/sim -run 'TestSimulation$' -count=1 -sim.seed=1234 -sim.v"
	if got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	if got := ReplayCommand(5, 77, "replbugs"); !strings.Contains(got, "-tags replbugs") || !strings.Contains(got, "-sim.steps=77") {
		t.Fatalf("got %q", got)
	}
}
