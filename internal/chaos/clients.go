package chaos

import (
	"context"
	"math/rand/v2"
	"sync"
)

// The clients beside the workers (RunConfig.SessionClients, CounterClients,
// CASClients): their ids in the history follow the workers', in that
// order, and each has its own seeded random stream.

// extraClients starts the session, counter and CAS clients; they stop when
// ctx ends (their operation under way completes first).
func extraClients(ctx context.Context, wg *sync.WaitGroup, cfg *RunConfig, h *History, c *Cluster, httpAddrs, respAddrs map[string]string) {
	id := cfg.Workers
	next := func() (int, *rand.Rand) {
		id++
		return id - 1, rand.New(rand.NewPCG(cfg.Seed, uint64(id)))
	}
	start := func(run func(context.Context), closer func()) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer closer()
			run(ctx)
		}()
	}
	for i := range cfg.SessionClients {
		wid, rnd := next()
		proto := cfg.Protocols[i%len(cfg.Protocols)]
		var conn sessionConn
		if proto == "resp" {
			conn = newRESPSession(respAddrs)
		} else {
			conn = &httpSession{c: NewHTTPClient(httpAddrs), rnd: rand.New(rand.NewPCG(cfg.Seed, uint64(wid)+1<<32))}
		}
		w := &sessionWorker{id: wid, proto: proto, conn: conn, h: h, cfg: cfg, ids: c.MemberIDs, rnd: rnd}
		start(w.run, conn.Close)
	}
	for range cfg.CounterClients {
		wid, rnd := next()
		w := &counterWorker{id: wid, cl: NewHTTPClient(httpAddrs), h: h, cfg: cfg, ids: c.MemberIDs, rnd: rnd}
		start(w.run, w.cl.Close)
	}
	for range cfg.CASClients {
		wid, rnd := next()
		w := &casWorker{id: wid, cl: NewHTTPClient(httpAddrs), h: h, cfg: cfg, ids: c.MemberIDs, rnd: rnd}
		start(w.run, w.cl.Close)
	}
}

// extraKeys are the keys the extra clients write, for the final reads.
func extraKeys(cfg *RunConfig) []string {
	var keys []string
	for i := range cfg.SessionClients {
		for k := range sessionKeys {
			keys = append(keys, sessionKey(cfg.Workers+i, k))
		}
	}
	if cfg.CounterClients > 0 {
		for k := range cfg.Counters {
			keys = append(keys, counterKey(k))
		}
	}
	if cfg.CASClients > 0 {
		keys = append(keys, casKey)
	}
	return keys
}

// checkExtra runs the checks of the extra clients and puts their figures
// in rep. final is every converged node's state (nil if it could not be
// read: the counters are then not checked, and recovery has failed).
func checkExtra(cfg *RunConfig, ops []Op, final map[string]map[string]FinalRead, leader string, rollbacks []Rollback, rep *Report) []Anomaly {
	var out []Anomaly
	if cfg.SessionClients > 0 {
		an, st := CheckSessions(ops, rollbacks, cfg.Nodes)
		out = append(out, an...)
		rep.Sessions = st
	}
	if cfg.CounterClients > 0 && final != nil {
		an, st := CheckCounters(ops, final, leader)
		out = append(out, an...)
		rep.Counters = st
	}
	if cfg.CASClients > 0 {
		an, st := CheckCAS(ops, cfg.CheckTimeout, cfg.Dir)
		out = append(out, an...)
		rep.CAS = st
	}
	return out
}
