package node

import (
	"github.com/trireme-db/trireme/internal/api"
	"github.com/trireme-db/trireme/internal/repl"
)

// replAck maps the ack a write asks for, in the client protocols' words
// (api.Ack: what HTTP, RESP, the shell and forwarded writes carry), to the
// replication core's (repl.Ack). This is the one place the two meet: the
// protocols and the transport speak api, the core speaks repl.
//
// writeParams has refused every mode api does not know; such a mode would
// reach the core as its byte, which the core refuses (repl.ErrBadAckMode).
func replAck(a api.Ack) repl.Ack {
	m := repl.AckMode(a.Mode)
	switch a.Mode {
	case api.AckAsync:
		m = repl.AckAsync
	case api.AckSemiSync:
		m = repl.AckSemiSync
	case api.AckSync:
		m = repl.AckSync
	case api.AckMajority:
		m = repl.AckMajority
	}
	return repl.Ack{Mode: m, Replicas: a.Replicas}
}
