package bench

import (
	"context"
	"fmt"
	"time"
)

// The idempotency part: what an Idempotency-Key costs a write. The same
// HTTP client program (httpDoer: one kept-alive connection per worker)
// writes random preloaded keys with PUT /v1/kv/KEY?ack=majority on the
// leader, with and without a fresh random Idempotency-Key on every write,
// in interleaved rounds on one cluster. A write with a key goes through
// the command path (a replicated idempotency table; the reply waits for
// the leader to apply it), one without is a plain put answered once
// committed. A third side, RESP SET with ack majority (go-redis, the
// bench's usual write), runs in the same rounds for reference: what the
// HTTP path itself costs against the RESP one.

// Idempotency sides (variant names).
const (
	SidePlainPut = "PUT majority"
	SideIdemPut  = "PUT majority + Idempotency-Key"
	SideRESPSet  = "RESP SET majority (reference)"
)

// idempotencyGoal is the least throughput with keys, over without, that
// issue 17 aims for (within 5%).
const idempotencyGoal = 0.95

// IdempotencyResult is what the idempotency part measured.
type IdempotencyResult struct {
	ValueBytes int     `json:"value_bytes"`
	Keys       int     `json:"keys"`
	Clients    int     `json:"clients"`
	Rounds     int     `json:"rounds"`
	Warmup     float64 `json:"warmup_s"`
	Duration   float64 `json:"duration_s"`
	// Comparison's base is the side with keys, against the one without
	// and the RESP reference.
	Comparison Comparison   `json:"comparison"`
	Runs       []LoadResult `json:"runs"`
	// Metrics are the leader's samples with "idempot" in their names at
	// the end (the table's size, replays).
	Metrics    map[string]float64 `json:"metrics,omitempty"`
	Notes      []string           `json:"notes,omitempty"`
	LoadBefore string             `json:"load_average_before"`
	LoadAfter  string             `json:"load_average_after"`
}

// TriremeIdempotency runs the idempotency part on a fresh 3-node cluster
// under dir: p.Keys keys of valueBytes preloaded, then issue17Rounds(p)
// rounds of both sides at targetClients connections.
func TriremeIdempotency(ctx context.Context, binary, dir string, procs int, insecurePeers bool, p Profile, valueBytes int, seed uint64, progress func(string)) (IdempotencyResult, error) {
	rounds := issue17Rounds(p)
	res := IdempotencyResult{ValueBytes: valueBytes, Keys: p.Keys, Clients: targetClients, Rounds: rounds, Warmup: p.Warmup.Seconds(),
		Duration: p.Duration.Seconds(), LoadBefore: loadAverage()}
	t, err := StartTriremeSetup(ctx, binary, dir, TriremeSetup{Voters: 3, Procs: procs, InsecurePeers: insecurePeers})
	if err != nil {
		return res, err
	}
	defer t.Stop()
	cl := t.Cluster()
	pre, err := t.Variant(ctx, "majority", "majority", 0, "linearizable")
	if err != nil {
		return res, err
	}
	progress(fmt.Sprintf("idempotency: preloading %d keys of %d B", p.Keys, valueBytes))
	if _, err := Preload(ctx, pre, p.Keys, valueBytes, 16, 30*time.Second); err != nil {
		return res, err
	}
	leaderHTTP := func() string {
		if l, err := t.Leader(ctx); err == nil {
			return l.HTTP
		}
		return cl.Spec().Nodes[0].HTTP
	}
	sides := []Variant{
		httpVariant(t.System, SideIdemPut, leaderHTTP, "?ack=majority", "", true, t.Pids),
		httpVariant(t.System, SidePlainPut, leaderHTTP, "?ack=majority", "", false, t.Pids),
		{System: t.System, Name: SideRESPSet, Pids: t.Pids, Open: func(ctx context.Context, i, n int) (Doer, error) {
			l, err := t.Leader(ctx)
			if err != nil {
				return nil, err
			}
			c, err := dialRESP(ctx, l.RESP, [][]any{{"TRIREME.ACK", "majority"}})
			if err != nil {
				return nil, err
			}
			return &respDoer{c: c}, nil
		}},
	}
	leader0, st0, err := cl.Leader(ctx)
	if err != nil {
		return res, err
	}
	for round := 1; round <= rounds; round++ {
		for _, i := range roundOrder(len(sides), round) {
			seed++
			lr, err := runSide(ctx, sides[i], LoadSpec{Workload: WorkWrite, ValueBytes: valueBytes, Clients: targetClients, Keys: p.Keys,
				Warmup: p.Warmup, Duration: p.Duration, OpTimeout: 10 * time.Second, Seed: seed}, round, rounds, "idempotency", progress)
			if err != nil {
				return res, err
			}
			res.Runs = append(res.Runs, lr)
		}
	}
	if id, st1, err := cl.Leader(ctx); err == nil {
		if id != leader0 || st1.Term != st0.Term {
			res.Notes = append(res.Notes, fmt.Sprintf("the leader changed during the part (%s term %d, then %s term %d)", leader0, st0.Term, id, st1.Term))
		}
		if ns, err := cl.Node(id); err == nil {
			res.Metrics, _ = scrapeMetrics(ctx, ns.HTTP, "idempot")
		}
	}
	res.Comparison = compare("Idempotency-Key", res.Runs, []string{t.System + " " + SideIdemPut, t.System + " " + SidePlainPut, t.System + " " + SideRESPSet})
	res.LoadAfter = loadAverage()
	return res, nil
}
