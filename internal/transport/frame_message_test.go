package transport

import (
	"bytes"
	"encoding/hex"
	"reflect"
	"testing"

	"github.com/trireme-db/trireme/internal/entry"
	"github.com/trireme-db/trireme/internal/repl"
)

// TestMessageFrameBytes: the single-leader engine's messages travel in
// message frames byte for byte as when the transport encoded repl.Message
// itself, whether sent encoded (SendPayload) or encoded by the writer
// (SendEncoder), so that nodes of the previous release understand them and
// send what this one understands. The hex was taken from that release's
// AppendMessage (commit a5d6d3c); internal/repl TestMessageWireBytes pins
// the message encoding with more samples.
func TestMessageFrameBytes(t *testing.T) {
	for _, c := range []struct {
		m    repl.Message
		want string
	}{
		{repl.Message{Type: repl.MsgHeartbeat, From: "n1", To: "n2", Term: 3, Index: 9, Commit: 9, Context: 77},
			"4700000003070300000000000000000000000000000009000000000000000900000000000000000000000000000000000000000000004d000000000000000002006e3102006e3200000000"},
		{repl.Message{Type: repl.MsgAppResp, From: "n2", To: "n1", Term: 3, Index: 5, Reject: true, HintTerm: 2, HintIndex: 4},
			"47000000030603000000000000000000000000000000050000000000000000000000000000000200000000000000040000000000000000000000000000000102006e3202006e3100000000"},
		{repl.Message{Type: repl.MsgApp, From: "n1", To: "n3", Term: 4, LogTerm: 3, Index: 10, Commit: 9,
			Entries: []entry.Entry{
				{Term: 4, Index: 11, Kind: entry.KindNoop},
				{Term: 4, Index: 12, Kind: entry.KindPut, Key: []byte("k"), Value: []byte("value"), RequestID: 42},
				{Term: 4, Index: 13, Kind: entry.KindDelete, Key: []byte("k")},
				{Term: 4, Index: 14, Kind: entry.KindCommand, Key: []byte("ctr"), Value: []byte{1, 2, 3}},
			}},
			"ec0000000305040000000000000003000000000000000a0000000000000009000000000000000000000000000000000000000000000000000000000000000002006e3102006e330400000022000000010104000000000000000b000000000000000000000000000000000000000000000028000000010204000000000000000c000000000000002a00000000000000010000006b0500000076616c756523000000010304000000000000000d000000000000000000000000000000010000006b0000000028000000010504000000000000000e0000000000000000000000000000000300000063747203000000010203"},
	} {
		want, err := hex.DecodeString(c.want)
		if err != nil {
			t.Fatal(err)
		}
		from, to := NodeID(c.m.From), NodeID(c.m.To)
		encoded := AppendPayload(nil, &Payload{Engine: EngineSingleLeader, From: from, To: to, Data: repl.AppendMessage(nil, &c.m)})
		lazy := appendEngineFrame([]byte("prefix"), frameTypeOf(EngineSingleLeader), EngineSingleLeader, from, to, (*wireMsg)(&c.m), nil)[len("prefix"):]
		for name, got := range map[string][]byte{"SendPayload": encoded, "SendEncoder": lazy} {
			if !bytes.Equal(got, want) {
				t.Errorf("%s: %s frame is\n%x, the previous release's\n%x", c.m.Type, name, got, want)
			}
		}
		// The previous release's frame is a single-leader payload that
		// decodes to the message.
		f, err := DecodeFrame(want, DefaultMaxFrameBytes)
		if err != nil || f.Type != FrameMessage || f.Payload.Engine != EngineSingleLeader || f.Payload.From != "" ||
			!bytes.Equal(f.Payload.Data, want[FrameHeaderSize:]) {
			t.Fatalf("%s: decoded %+v, %v", c.m.Type, f.Payload, err)
		}
		if m, err := repl.DecodeMessage(f.Payload.Data); err != nil || !reflect.DeepEqual(m, c.m) {
			t.Fatalf("%s: payload decodes to %+v, %v", c.m.Type, m, err)
		}
	}
}
