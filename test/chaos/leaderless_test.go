package chaos

import (
	"flag"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/trireme-db/trireme/internal/chaos"
)

var (
	flagSloppy      = flag.String("chaos.sloppy", "", "leaderless: the nodes' --sloppy-quorum, true or false (TestChaosLeaderless: only that subtest; long profile: default false)")
	flagReplication = flag.Int("chaos.replication", 3, "leaderless long profile: the nodes' --replication-factor (N)")
	flagGrace       = flag.Duration("chaos.tombstone-grace", 4*time.Second, "leaderless long profile: the nodes' --tombstone-grace; longer than -chaos.duration, no tombstone is collected and every quorum read's causal context is checked to cover the writes acknowledged before it")
)

// sloppyFlag parses -chaos.sloppy: "" (unset), true or false.
func sloppyFlag(t *testing.T) (set, sloppy bool) {
	t.Helper()
	if *flagSloppy == "" {
		return false, false
	}
	b, err := strconv.ParseBool(*flagSloppy)
	if err != nil {
		t.Fatalf("-chaos.sloppy=%q: want true or false", *flagSloppy)
	}
	return true, b
}

// TestChaosLeaderless is the leaderless profile: 5 nodes, each key on 3
// home replicas, partitions, kills, pauses and slow links, 12 s with
// strict quorums (--sloppy-quorum=false) and 12 s with sloppy ones (about
// 35 s in all with quiescence and checks). HTTP workers write unique
// values to 6 keys through random nodes with random w=, read them with
// random r=, and delete some (blindly or with a read's context), and give
// short lives (put, read, delete) to keys of their own. With strict
// quorums every read with R + W > N that began after a write was
// acknowledged must return it or what may supersede it, and its causal
// context must cover the write's version (no tombstone is collected in that
// subtest, so contexts only grow); with sloppy ones tombstones are collected
// after 4 s. After healing and quiescence every acknowledged write must be
// on every home replica of its key (or superseded there), the home replicas
// must hold the same state, and no value a write certainly superseded
// (deleted or overwritten) may be alive. -chaos.sloppy=true|false runs one
// subtest; -chaos.mode=leaderless runs the long profile (TestChaosLong).
func TestChaosLeaderless(t *testing.T) {
	seed := baseSeed()
	set, only := sloppyFlag(t)
	for i, sloppy := range []bool{false, true} {
		if set && sloppy != only {
			continue
		}
		name := map[bool]string{false: "strict", true: "sloppy"}[sloppy]
		t.Run(name, func(t *testing.T) {
			cfg := chaos.DefaultLeaderlessRunConfig()
			cfg.Seed = seed + uint64(i)
			cfg.SloppyQuorum, cfg.Duration = sloppy, 12*time.Second
			if !sloppy {
				cfg.TombstoneGrace = time.Hour
			}
			replay := fmt.Sprintf("go test ./test/chaos -run 'TestChaosLeaderless/%s' -chaos.seed=%d -v", name, seed)
			rep := mustRun(t, cfg, replay)
			if rep != nil && rep.LL != nil && rep.LL.Puts.Acked == 0 {
				t.Errorf("seed %d: no put was acknowledged: the run checked nothing", cfg.Seed)
			}
		})
	}
}

// longLeaderless is the long profile with -chaos.mode=leaderless.
func longLeaderless(t *testing.T) {
	cfg := chaos.DefaultLeaderlessRunConfig()
	cfg.Seed = baseSeed()
	cfg.Nodes, cfg.Duration, cfg.Workers = *flagNodes, *flagDuration, *flagWorkers
	cfg.ReplicationFactor, cfg.ContendedKeys, cfg.TombstoneGrace = *flagReplication, *flagContended, *flagGrace
	if _, sloppy := sloppyFlag(t); sloppy {
		cfg.SloppyQuorum = true
	}
	cfg.Faults = chaos.LeaderlessFaultKinds
	if flagGiven("chaos.faults") {
		cfg.Faults = list(*flagFaults)
	}
	if flagGiven("chaos.ack") {
		cfg.Acks = list(*flagAck)
	}
	if flagGiven("chaos.reads") {
		cfg.Reads = list(*flagReads)
	}
	var err error
	if cfg.HoldMin, cfg.HoldMax, err = durRange(*flagHold, cfg.HoldMin, cfg.HoldMax); err != nil {
		t.Fatalf("-chaos.hold: %v", err)
	}
	if cfg.GapMin, cfg.GapMax, err = durRange(*flagGap, cfg.GapMin, cfg.GapMax); err != nil {
		t.Fatalf("-chaos.gap: %v", err)
	}
	replay := fmt.Sprintf("go test ./test/chaos -run TestChaosLong -timeout 0 -chaos.mode=leaderless -chaos.sloppy=%v -chaos.tombstone-grace=%v -chaos.duration=%v -chaos.seed=%d -chaos.nodes=%d -chaos.replication=%d -chaos.faults=%s -chaos.ack=%s -chaos.reads=%s -chaos.workers=%d -chaos.contended=%d -chaos.hold=%v-%v -chaos.gap=%v-%v -v",
		cfg.SloppyQuorum, cfg.TombstoneGrace, cfg.Duration, cfg.Seed, cfg.Nodes, cfg.ReplicationFactor, strings.Join(cfg.Faults, ","), strings.Join(cfg.Acks, ","),
		strings.Join(cfg.Reads, ","), cfg.Workers, cfg.ContendedKeys, cfg.HoldMin, cfg.HoldMax, cfg.GapMin, cfg.GapMax)
	mustRun(t, cfg, replay)
}
