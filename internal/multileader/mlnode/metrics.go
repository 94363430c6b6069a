package mlnode

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	metricsreg "github.com/trireme-db/trireme/internal/metrics"
)

// metrics are the multi-leader node's Prometheus metrics (namespace
// trireme, label node), beside the shell's.
type metrics struct {
	streamSeq                           prometheus.Gauge
	peerLagEntries, peerLagSeconds      *prometheus.GaugeVec
	peerAcked, peerClockOffset          *prometheus.GaugeVec
	conflicts, refusedMsgs, droppedMsgs prometheus.Counter
	clockClamps                         prometheus.Gauge
	writes                              *prometheus.CounterVec
	writeSeconds                        prometheus.Histogram
	reads                               prometheus.Counter
	fatal                               prometheus.Gauge
	handler                             http.Handler
	reg                                 prometheus.Registerer
	collectors                          []prometheus.Collector
}

func newMetrics(reg prometheus.Registerer, nodeID string) (*metrics, error) {
	reg, handler := metricsreg.Registry(reg, nodeID)
	gv := func(name, help string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "trireme", Name: name, Help: help}, []string{"peer"})
	}
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: "trireme", Name: name, Help: help})
	}
	g := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "trireme", Name: name, Help: help})
	}
	m := &metrics{
		streamSeq:       g("ml_stream_seq", "Multi-leader: the end of this node's own stream of writes."),
		peerLagEntries:  gv("ml_peer_lag_entries", "Multi-leader: entries of the peer's stream not yet applied here."),
		peerLagSeconds:  gv("ml_peer_lag_seconds", "Multi-leader: how long this node has been behind the peer's stream (0 when caught up)."),
		peerAcked:       gv("ml_peer_acked_seq", "Multi-leader: this node's stream applied durably by the peer."),
		peerClockOffset: gv("ml_peer_clock_offset_seconds", "Multi-leader: largest offset seen in the peer's timestamps (positive: the peer's clock ahead)."),
		conflicts:       c("ml_conflicts_total", "Multi-leader: conflicts recorded (concurrent versions of a key met here)."),
		clockClamps:     g("ml_clock_clamps", "Multi-leader: remote timestamps ahead of this node's clock by more than --max-clock-offset (applied, not followed)."),
		refusedMsgs:     c("ml_refused_messages_total", "Multi-leader: peer messages refused (undecodable, forged sender, another engine's)."),
		droppedMsgs:     c("ml_dropped_messages_total", "Multi-leader: peer messages dropped because the node's queue was full (the protocol resends)."),
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "trireme", Name: "ml_writes_total",
			Help: "Multi-leader: client writes by outcome (ok, timeout, error)."}, []string{"outcome"}),
		writeSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "trireme", Name: "ml_write_seconds",
			Help: "Multi-leader: client write latency, until its ack was met.", Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18)}),
		reads: c("ml_reads_total", "Multi-leader: client reads served."),
		fatal: g("fatal", "1 once the node stopped on a fatal storage error."),
		reg:   reg,
	}
	m.collectors = []prometheus.Collector{m.streamSeq, m.peerLagEntries, m.peerLagSeconds, m.peerAcked, m.peerClockOffset,
		m.conflicts, m.clockClamps, m.refusedMsgs, m.droppedMsgs, m.writes, m.writeSeconds, m.reads, m.fatal}
	for i, col := range m.collectors {
		if err := reg.Register(col); err != nil {
			for _, done := range m.collectors[:i] {
				reg.Unregister(done)
			}
			return nil, err
		}
	}
	m.handler = handler
	return m, nil
}

// observe updates the gauges from a published status.
func (m *metrics) observe(s *statusSnap) {
	m.streamSeq.Set(float64(s.lastSeq))
	m.clockClamps.Set(float64(s.stats.ClockClamps))
	for _, p := range s.peers {
		m.peerLagEntries.WithLabelValues(p.ID).Set(float64(p.Known - p.Applied))
		m.peerLagSeconds.WithLabelValues(p.ID).Set(float64(p.BehindTicks) * s.tick.Seconds())
		m.peerAcked.WithLabelValues(p.ID).Set(float64(p.Acked))
		m.peerClockOffset.WithLabelValues(p.ID).Set(float64(p.MaxOffsetNanos) / 1e9)
	}
}

func (m *metrics) unregister() {
	for _, c := range m.collectors {
		m.reg.Unregister(c)
	}
}
