package chaos

import (
	"strings"
	"testing"
	"time"
)

func TestRunConfigValidate(t *testing.T) {
	good := DefaultRunConfig()
	good.Binary, good.Dir = "/bin/true", "/tmp/x"
	if err := good.Validate(); err != nil {
		t.Fatalf("default config: %v", err)
	}
	tests := []struct {
		name  string
		edit  func(*RunConfig)
		field string
	}{
		{"no binary", func(c *RunConfig) { c.Binary = "" }, "Binary"},
		{"no nodes", func(c *RunConfig) { c.Nodes = 0 }, "Nodes"},
		{"bad ack", func(c *RunConfig) { c.Acks = []string{"quorum"} }, "Acks"},
		{"bad read", func(c *RunConfig) { c.Reads = []string{"eventual"} }, "Reads"},
		{"bad protocol", func(c *RunConfig) { c.Protocols = []string{"grpc"} }, "Protocols"},
		{"bad fault", func(c *RunConfig) { c.Faults = []string{"meteor"} }, "Faults"},
		{"inverted hold", func(c *RunConfig) { c.HoldMin, c.HoldMax = 2*time.Second, time.Second }, "hold"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good
			tt.edit(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.field) {
				t.Fatalf("Validate() = %v, want an error naming %s", err, tt.field)
			}
		})
	}
}

func TestReportSummary(t *testing.T) {
	r := &Report{Seed: 42, Nodes: 3, Dir: "/tmp/run", Ops: 10, Faults: map[string]int{"kill/leader": 2, "slow": 1},
		Failovers: []Failover{
			{Detect: 100 * time.Millisecond, Elect: 200 * time.Millisecond, Write: 300 * time.Millisecond, OK: true},
			{Detect: 110 * time.Millisecond, Elect: 210 * time.Millisecond, Write: 310 * time.Millisecond, OK: true},
			{OK: false}, // not measured: left out of the percentiles
		},
		Anomalies: []Anomaly{{Kind: AnomalyLostWrite, Key: "s-majority-0-1", Detail: "gone"}}}
	d, e, w := r.FailoverPercentiles()
	if d[0] != 100*time.Millisecond || e[1] != 210*time.Millisecond || w[1] != 310*time.Millisecond {
		t.Fatalf("percentiles detect %v elect %v write %v", d, e, w)
	}
	s := r.Summary()
	for _, want := range []string{"seed 42", "kill/leader=2", "slow=1", "2 leader kills measured of 3",
		"first write p50 300ms p99 310ms", "anomalies: 1", "lost-acknowledged-write [key s-majority-0-1]"} {
		if !strings.Contains(s, want) {
			t.Errorf("summary lacks %q:\n%s", want, s)
		}
	}
}

func TestReportSummaryClients(t *testing.T) {
	r := &Report{Seed: 1, Nodes: 3, Faults: map[string]int{},
		Sessions: SessionStats{Clients: 2, Sessions: 3, Writes: map[string]int{"ok": 5}, Reads: map[string]int{"ok": 9, "rolled-back": 1}, Claims: 1, Journaled: 1},
		Counters: CounterStats{Acked: 7, Unknown: 1, Attempts: 9, Final: map[string]int{"c-0": 8}},
		CAS:      CASStats{Reads: 4, OK: 3, Refused: 1, Checked: 8}}
	s := r.Summary()
	for _, want := range []string{"sessions: 2 clients, 3 sessions", "rolled-back answers 1 (journaled 1)",
		"7 increments acknowledged, 1 unknown", "c-0=8", "3 writes ok, 1 refused (412)", "checked 8 ops"} {
		if !strings.Contains(s, want) {
			t.Errorf("summary lacks %q:\n%s", want, s)
		}
	}
	c := DefaultRunConfig()
	c.Binary, c.Dir, c.CounterClients, c.Counters = "/bin/true", "/tmp/x", 1, 0
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "Counters") {
		t.Fatalf("Validate() = %v, want an error naming Counters", err)
	}
}
