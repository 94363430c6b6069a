package transport

import (
	"encoding/hex"
	"reflect"
	"testing"

	"github.com/trireme-db/trireme/internal/api"
)

// A forwarded write's frame is byte for byte what it was when it carried the
// replication core's ack (repl.Ack): the ack mode is one byte of the peer
// wire format, and api.AckMode keeps its numbers. The hex was taken from the
// encoder before ForwardRequest.Ack became api.Ack.
func TestForwardRequestAckBytes(t *testing.T) {
	for _, c := range []struct {
		r    ForwardRequest
		want string
	}{
		{ForwardRequest{ID: 7, Op: OpPut, Key: []byte("k"), Value: []byte("v"), Ack: api.Ack{Mode: api.AckMajority}, TimeoutMs: 1500}, "2300000004070000000000000001000000000000dc0500000000000000010000006b0100000076"},
		{ForwardRequest{ID: 7, Op: OpPut, Key: []byte("k"), Value: []byte("v"), Ack: api.Ack{Mode: api.AckAsync}, TimeoutMs: 1500}, "2300000004070000000000000001010000000000dc0500000000000000010000006b0100000076"},
		{ForwardRequest{ID: 7, Op: OpPut, Key: []byte("k"), Value: []byte("v"), Ack: api.Ack{Mode: api.AckSemiSync, Replicas: 2}, TimeoutMs: 1500}, "2300000004070000000000000001020200000000dc0500000000000000010000006b0100000076"},
		{ForwardRequest{ID: 7, Op: OpPut, Key: []byte("k"), Value: []byte("v"), Ack: api.Ack{Mode: api.AckSync}, TimeoutMs: 1500}, "2300000004070000000000000001030000000000dc0500000000000000010000006b0100000076"},
		{ForwardRequest{ID: 9, Op: OpDelete, Key: []byte("k"), DefaultAck: true, Token: api.Token{Term: 3, Index: 4}}, "4200000004090000000000000002000000000001000000000000000000010000006b000000000300000000000000040000000000000000000000000000000000000000000000"},
	} {
		b := AppendForwardRequest(nil, &c.r)
		if got := hex.EncodeToString(b); got != c.want {
			t.Errorf("%v %+v encodes as\n%s, want\n%s", c.r.Ack.Mode, c.r, got, c.want)
			continue
		}
		f, err := DecodeFrame(b, DefaultMaxFrameBytes)
		if err != nil || f.Request == nil || !reflect.DeepEqual(*f.Request, c.r) {
			t.Errorf("%v: decoded %+v, %v; want %+v", c.r.Ack.Mode, f.Request, err, c.r)
		}
	}
}
