// Package metrics is the shell's Prometheus registry for one node, whatever
// its replication engine: where the engine registers its collectors
// (labelled with the node's id) and the handler that serves them.
package metrics

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Registry returns the registerer a node's engine registers its collectors
// with (every metric labelled node=nodeID) and the /metrics handler. reg
// nil: a registry of the node's own; a reg that is also a Gatherer (the
// shell's, holding the client authenticator's metrics) is served as is;
// any other reg is registered into and the default gatherer served.
func Registry(reg prometheus.Registerer, nodeID string) (prometheus.Registerer, http.Handler) {
	var gatherer prometheus.Gatherer
	if reg == nil {
		r := prometheus.NewRegistry()
		reg, gatherer = r, r
	} else if g, ok := reg.(prometheus.Gatherer); ok {
		gatherer = g
	} else {
		gatherer = prometheus.DefaultGatherer
	}
	return prometheus.WrapRegistererWith(prometheus.Labels{"node": nodeID}, reg),
		promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{})
}
