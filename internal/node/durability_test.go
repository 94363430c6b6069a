package node

import (
	"testing"

	"github.com/trireme-db/trireme/internal/api"
	"github.com/trireme-db/trireme/internal/repl"
)

// Every api ack mode maps to the core's mode of the same name (the name is
// what a write's reply reports as its Durability), and Replicas carries over.
func TestReplAck(t *testing.T) {
	for _, c := range []struct {
		in   api.Ack
		want repl.Ack
	}{
		{api.Ack{}, repl.Ack{Mode: repl.AckMajority}},
		{api.Ack{Mode: api.AckAsync}, repl.Ack{Mode: repl.AckAsync}},
		{api.Ack{Mode: api.AckSemiSync, Replicas: 2}, repl.Ack{Mode: repl.AckSemiSync, Replicas: 2}},
		{api.Ack{Mode: api.AckSync}, repl.Ack{Mode: repl.AckSync}},
		{api.Ack{Mode: api.AckMajority}, repl.Ack{Mode: repl.AckMajority}},
	} {
		got := replAck(c.in)
		if got != c.want {
			t.Errorf("replAck(%+v) = %+v, want %+v", c.in, got, c.want)
		}
		if got.Mode.String() != c.in.Mode.String() {
			t.Errorf("replAck(%v) = %v: the names differ", c.in.Mode, got.Mode)
		}
	}
}
