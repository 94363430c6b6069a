package node

import (
	"math"
	"net/http"
	"sync/atomic"
	"time"

	metricsreg "github.com/trireme-db/trireme/internal/metrics"
	"github.com/trireme-db/trireme/internal/repl"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the node's Prometheus metrics. Gauges are set by the Ready loop.
type metrics struct {
	role, term, lastIndex, commitIndex, appliedIndex prometheus.Gauge
	followerLagEntries, followerLagSeconds           *prometheus.GaugeVec
	writeSeconds                                     *prometheus.HistogramVec
	electionsStarted, electionsWon                   prometheus.Counter
	failoverSeconds                                  prometheus.Histogram
	rollbacks                                        prometheus.Counter
	readyBatches                                     prometheus.Counter
	readyEntries                                     prometheus.Counter
	lingers                                          prometheus.Counter
	refusedMsgs                                      prometheus.Counter
	fatal                                            prometheus.Gauge
	diskFree, diskLow                                prometheus.Gauge
	diskRefused                                      prometheus.Counter
	walBytes, walFirstIndex                          prometheus.Gauge // set by the compactor
	walCompactions                                   prometheus.Counter
	snapSent, snapBytesSent, snapFailures            prometheus.Counter
	snapReceived, snapBytesReceived                  prometheus.Counter
	idemDuplicates                                   prometheus.Counter
	sessionReads                                     *prometheus.CounterVec // by how they were served
	boundedReads                                     *prometheus.CounterVec
	snapRecvFailures                                 prometheus.Counter

	// fd mirrors the core's failure detector, set by publish and read by
	// the collectors (GaugeFunc, CounterFunc) at scrape time.
	fd fdMirror

	// writeObs holds writeSeconds' children by ack mode and outcome, made
	// up front (a label lookup hashes the labels under a lock, on every
	// write); read-only after newMetrics.
	writeObs [repl.AckSync + 1][repl.OutcomeUnknown + 1]prometheus.Observer
	// lagGauges caches followerLag*'s children by follower (set on every
	// loop iteration); cleared with the vectors.
	lagGauges map[repl.NodeID][2]prometheus.Gauge

	handler    http.Handler
	reg        prometheus.Registerer
	collectors []prometheus.Collector
}

// observeWrite records one write's duration.
func (m *metrics) observeWrite(mode repl.AckMode, out repl.Outcome, seconds float64) {
	if int(mode) >= len(m.writeObs) || int(out) >= len(m.writeObs[0]) {
		m.writeSeconds.WithLabelValues(mode.String(), out.String()).Observe(seconds)
		return
	}
	m.writeObs[mode][out].Observe(seconds)
}

// setFollowerLag sets a follower's lag gauges (run loop only).
func (m *metrics) setFollowerLag(id repl.NodeID, entries uint64, seconds float64) {
	g, ok := m.lagGauges[id]
	if !ok {
		g = [2]prometheus.Gauge{m.followerLagEntries.WithLabelValues(string(id)), m.followerLagSeconds.WithLabelValues(string(id))}
		m.lagGauges[id] = g
	}
	g[0].Set(float64(entries))
	g[1].Set(seconds)
}

// resetFollowerLag removes every follower's lag gauges (leadership lost).
func (m *metrics) resetFollowerLag() {
	m.followerLagEntries.Reset()
	m.followerLagSeconds.Reset()
	clear(m.lagGauges)
}

// unregister removes the node's collectors, so that a node restarted in the
// same process can register again.
func (m *metrics) unregister() {
	for _, c := range m.collectors {
		m.reg.Unregister(c)
	}
}

// peerCounters is what a transport counts of hostile or broken peers.
type peerCounters interface {
	Forged() uint64  // payload frames dropped: From not the authenticated peer, or To not us
	Refused() uint64 // inbound connections refused at the TLS or the node handshake
}

// watchPeers exports the counts of forged peer messages (the node's own,
// forged(), for the single-leader messages the transport does not look
// inside, plus pc's for payload frames) and pc's refused connections. pc
// may be nil (a transport that counts nothing).
func (m *metrics) watchPeers(forged func() uint64, pc peerCounters) error {
	cols := []prometheus.Collector{
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "trireme", Name: "peer_messages_forged_total",
			Help: "Peer messages dropped because their sender or addressee was not the authenticated peer and this node."},
			func() float64 {
				n := forged()
				if pc != nil {
					n += pc.Forged()
				}
				return float64(n)
			}),
	}
	if pc != nil {
		cols = append(cols, prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "trireme", Name: "peer_connections_refused_total",
			Help: "Inbound peer connections refused at the TLS or the node handshake (no member certificate, wrong cluster, bad handshake)."},
			func() float64 { return float64(pc.Refused()) }))
	}
	for _, col := range cols {
		if err := m.reg.Register(col); err != nil {
			return err
		}
		m.collectors = append(m.collectors, col)
	}
	return nil
}

// watchIdempotency exports the size of the store's idempotency table, read
// at each scrape (one Pebble point read).
func (m *metrics) watchIdempotency(records func() (uint64, error)) error {
	col := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "trireme", Name: "idempotency_records",
		Help: "Records in the replicated idempotency table (results of writes with an idempotency key, kept for " +
			"--idempotency-window, at most --idempotency-max-keys)."},
		func() float64 {
			n, err := records()
			if err != nil {
				return -1
			}
			return float64(n)
		})
	if err := m.reg.Register(col); err != nil {
		return err
	}
	m.collectors = append(m.collectors, col)
	return nil
}

func newMetrics(reg prometheus.Registerer, nodeID string) (*metrics, error) {
	reg, handler := metricsreg.Registry(reg, nodeID)
	g := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "trireme", Name: name, Help: help})
	}
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: "trireme", Name: name, Help: help})
	}
	m := &metrics{
		role:         g("role", "Role of this node: 0 follower, 1 pre-candidate, 2 candidate, 3 leader."),
		term:         g("term", "Current term."),
		lastIndex:    g("last_index", "Last index in the local log."),
		commitIndex:  g("commit_index", "Highest index known committed."),
		appliedIndex: g("applied_index", "Highest index applied to the store."),
		followerLagEntries: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "trireme", Name: "follower_lag_entries",
			Help: "Leader only: entries a follower lacks (leader last index - follower match)."}, []string{"follower"}),
		followerLagSeconds: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "trireme", Name: "follower_lag_seconds",
			Help: "Leader only: time since the follower last held the leader's last index."}, []string{"follower"}),
		writeSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "trireme", Name: "write_duration_seconds",
			Help:    "Latency of writes proposed on this node, by ack mode and outcome.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18)}, []string{"ack", "outcome"}),
		electionsStarted: c("elections_started_total", "Elections this node started (became candidate)."),
		electionsWon:     c("elections_won_total", "Elections this node won (became leader)."),
		failoverSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "trireme", Name: "failover_duration_seconds",
			Help:    "Time this node spent without a known leader, from losing one to knowing the next.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 12)}),
		rollbacks:    c("rollbacks_total", "Log entries discarded by this node and written to the rollback journal."),
		readyBatches: c("ready_batches_total", "Ready batches processed."),
		readyEntries: c("ready_entries_total", "Entries appended to the WAL through Ready batches."),
		lingers: c("lingers_total", "Times new writes waited (at most 2 ms) for the batch being replicated, "+
			"to go out together as the next batch."),
		refusedMsgs: c("peer_messages_refused_total", "Peer messages refused as malformed (undecodable, or "+
			"refused by the protocol core: unknown sender, impossible term or indexes): a member with a bug, or a forged message."),
		fatal: g("fatal", "1 once the node stopped on a fatal error."),
		diskFree: g("disk_free_bytes", "Bytes free for the node on the file system of its data directory "+
			"(checked every second)."),
		diskLow: g("disk_low", "1 while free space is below --disk-reserve: as leader the node refuses client writes."),
		diskRefused: c("writes_refused_disk_total", "Client writes this node refused as leader because free "+
			"disk space was below --disk-reserve."),
		walBytes: g("wal_bytes", "Bytes of the WAL's segments (headers and records; the active segment's "+
			"preallocated space is not counted)."),
		walFirstIndex:  g("wal_first_index", "First index still in the WAL (1 until the WAL is compacted)."),
		walCompactions: c("wal_compactions_total", "Times old WAL segments were dropped (--log-retain)."),
		snapSent:       c("snapshots_sent_total", "Snapshots this node sent as leader that the follower installed (or, if it reads only version 1 of the snapshot format, received whole)."),
		snapBytesSent:  c("snapshot_bytes_sent_total", "Bytes of snapshot data sent (resumed bytes not sent again are not counted)."),
		snapFailures: c("snapshot_send_failures_total", "Snapshot attempts that failed: the transfer, or the "+
			"follower's install (the leader tries again after a backoff)."),
		snapReceived:      c("snapshots_received_total", "Snapshots this node received whole (then installed unless stale)."),
		snapBytesReceived: c("snapshot_bytes_received_total", "Bytes of snapshot data received."),
		snapRecvFailures: c("snapshot_receive_failures_total", "Snapshot transfers this node failed to receive "+
			"(a connection lost, a bad stream) or received but could not install (refused by the store)."),
		idemDuplicates: c("idempotent_replays_total", "Writes this node answered as leader with the recorded result "+
			"of an earlier write with the same idempotency key (a retry), applying nothing."),
		sessionReads: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "trireme", Name: "session_reads_total",
			Help: "Session reads by how they ended: local (served here), waited (served here after waiting for the " +
				"token), forwarded (to the leader), rolled_back (the token's write was discarded)."}, []string{"served"}),
		boundedReads: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "trireme", Name: "bounded_reads_total",
			Help: "Bounded-staleness reads by how they were served: local (within the bound) or forwarded."}, []string{"served"}),
	}
	fdCols := m.fd.collectors()
	m.reg = reg
	m.lagGauges = make(map[repl.NodeID][2]prometheus.Gauge)
	for mode := range m.writeObs {
		for out := range m.writeObs[mode] {
			m.writeObs[mode][out] = m.writeSeconds.WithLabelValues(repl.AckMode(mode).String(), repl.Outcome(out).String())
		}
	}
	for _, col := range []prometheus.Collector{m.role, m.term, m.lastIndex, m.commitIndex, m.appliedIndex,
		m.followerLagEntries, m.followerLagSeconds, m.writeSeconds, m.electionsStarted, m.electionsWon,
		m.failoverSeconds, m.rollbacks, m.readyBatches, m.readyEntries, m.lingers, m.refusedMsgs, m.fatal,
		m.diskFree, m.diskLow, m.diskRefused, m.walBytes, m.walFirstIndex, m.walCompactions,
		m.snapSent, m.snapBytesSent, m.snapFailures, m.snapReceived, m.snapBytesReceived, m.snapRecvFailures,
		m.idemDuplicates, m.sessionReads, m.boundedReads, fdCols[0], fdCols[1], fdCols[2], fdCols[3], fdCols[4]} {
		if err := reg.Register(col); err != nil {
			m.unregister()
			return nil, err
		}
		m.collectors = append(m.collectors, col)
	}
	m.handler = handler
	return m, nil
}

// fdMirror holds the failure detector's last published state.
type fdMirror struct {
	timeoutNanos   atomic.Int64
	suspicionBits  atomic.Uint64
	suspicions     atomic.Uint64
	falseSuspicion atomic.Uint64
	detections     atomic.Uint64
}

// set mirrors d; tick converts its ticks.
func (f *fdMirror) set(d *repl.DetectorStatus, tick time.Duration) {
	f.timeoutNanos.Store(int64(d.TimeoutTicks) * int64(tick))
	f.suspicionBits.Store(math.Float64bits(d.Suspicion))
	f.suspicions.Store(d.Suspicions)
	f.falseSuspicion.Store(d.FalseSuspicions)
	f.detections.Store(d.Detections)
}

func (f *fdMirror) collectors() [5]prometheus.Collector {
	return [5]prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "trireme", Name: "failure_detector_timeout_seconds",
			Help: "Follower: the silence from the leader after which this node would campaign now " +
				"(adaptive: learned from heartbeat arrivals within the election timeout bounds; fixed: the drawn timeout). " +
				"0 on the leader."},
			func() float64 { return time.Duration(f.timeoutNanos.Load()).Seconds() }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "trireme", Name: "failure_detector_suspicion",
			Help: "Follower, adaptive detector: phi, -log10 of the probability that the leader's next heartbeat " +
				"is still to come after the current silence (about 1 per 10x less likely; 0 when fixed)."},
			func() float64 { return math.Float64frombits(f.suspicionBits.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "trireme", Name: "failure_detector_suspicions_total",
			Help: "Times this node gave up on a silent leader and started a campaign (pre-vote)."},
			func() float64 { return float64(f.suspicions.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "trireme", Name: "failure_detector_false_suspicions_total",
			Help: "Suspicions that were wrong: the campaign ended hearing the same leader in the same term " +
				"(its pre-vote was refused because the leader was alive)."},
			func() float64 { return float64(f.falseSuspicion.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "trireme", Name: "failure_detector_detections_total",
			Help: "Suspicions that were right: a leader of a later term took over."},
			func() float64 { return float64(f.detections.Load()) }),
	}
}
