package llnode

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	metricsreg "github.com/trireme-db/trireme/internal/metrics"
)

// metrics are the leaderless node's Prometheus metrics (namespace trireme,
// label node), beside the shell's.
type metrics struct {
	hintsPending                                     *prometheus.GaugeVec
	aeDiffering                                      *prometheus.GaugeVec
	hintsStored, hintsDelivered, readRepairs         prometheus.Gauge
	aeExchanges, aeBucketsDiffer, aeRepairs, tombsGC prometheus.Gauge
	peersDown                                        prometheus.Gauge
	refusedMsgs, droppedMsgs                         prometheus.Counter
	writes, reads                                    *prometheus.CounterVec
	writeSeconds                                     prometheus.Histogram
	fatal                                            prometheus.Gauge
	handler                                          http.Handler
	reg                                              prometheus.Registerer
	collectors                                       []prometheus.Collector
}

func newMetrics(reg prometheus.Registerer, nodeID string) (*metrics, error) {
	reg, handler := metricsreg.Registry(reg, nodeID)
	gv := func(name, label, help string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "trireme", Name: name, Help: help}, []string{label})
	}
	g := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "trireme", Name: name, Help: help})
	}
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: "trireme", Name: name, Help: help})
	}
	m := &metrics{
		hintsPending:    gv("ll_hints_pending", "home", "Leaderless: hints held for the home replica, not yet handed over."),
		aeDiffering:     gv("ll_ae_differing_buckets", "peer", "Leaderless: Merkle buckets that differed in the last anti-entropy exchange with the peer."),
		hintsStored:     g("ll_hints_stored", "Leaderless: copies taken as a stand-in for an unreachable replica, since start."),
		hintsDelivered:  g("ll_hints_delivered", "Leaderless: hints handed over to their home replica, since start."),
		readRepairs:     g("ll_read_repairs", "Leaderless: stale replicas sent a repair by read repair, since start."),
		aeExchanges:     g("ll_ae_exchanges", "Leaderless: anti-entropy exchanges started, since start."),
		aeBucketsDiffer: g("ll_ae_buckets_differ", "Leaderless: Merkle buckets found different, since start."),
		aeRepairs:       g("ll_ae_repairs", "Leaderless: keys this node repaired from anti-entropy, since start."),
		tombsGC:         g("ll_tombstones_collected", "Leaderless: tombstones collected once every replica had them, since start."),
		peersDown:       g("ll_peers_down", "Leaderless: peers this node considers unreachable."),
		refusedMsgs:     c("ll_refused_messages_total", "Leaderless: peer messages refused (undecodable, forged sender, another engine's)."),
		droppedMsgs:     c("ll_dropped_messages_total", "Leaderless: peer messages dropped because the node's queue was full."),
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "trireme", Name: "ll_writes_total",
			Help: "Leaderless: client writes coordinated here, by outcome (ok, timeout, error)."}, []string{"outcome"}),
		reads: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "trireme", Name: "ll_reads_total",
			Help: "Leaderless: client reads coordinated here, by outcome (ok, error, local)."}, []string{"outcome"}),
		writeSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "trireme", Name: "ll_write_seconds",
			Help: "Leaderless: client write latency, until W replicas held it.", Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18)}),
		fatal: g("fatal", "1 once the node stopped on a fatal storage error."),
		reg:   reg,
	}
	m.collectors = []prometheus.Collector{m.hintsPending, m.aeDiffering, m.hintsStored, m.hintsDelivered, m.readRepairs,
		m.aeExchanges, m.aeBucketsDiffer, m.aeRepairs, m.tombsGC, m.peersDown, m.refusedMsgs, m.droppedMsgs,
		m.writes, m.reads, m.writeSeconds, m.fatal}
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
	m.hintsPending.Reset()
	for home, k := range s.hints {
		m.hintsPending.WithLabelValues(home).Set(float64(k))
	}
	for p, d := range s.diff {
		if d >= 0 {
			m.aeDiffering.WithLabelValues(p).Set(float64(d))
		}
	}
	m.hintsStored.Set(float64(s.stats.HintsStored))
	m.hintsDelivered.Set(float64(s.stats.HintsDelivered))
	m.readRepairs.Set(float64(s.stats.ReadRepairs))
	m.aeExchanges.Set(float64(s.stats.AEExchanges))
	m.aeBucketsDiffer.Set(float64(s.stats.AEBucketsDiffer))
	m.aeRepairs.Set(float64(s.stats.AERepairs))
	m.tombsGC.Set(float64(s.stats.TombstonesGC))
	m.peersDown.Set(float64(len(s.down)))
}

func (m *metrics) unregister() {
	for _, c := range m.collectors {
		m.reg.Unregister(c)
	}
}
