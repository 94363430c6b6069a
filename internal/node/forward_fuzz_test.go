package node

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/trireme-db/trireme/internal/api"
	"github.com/trireme-db/trireme/internal/transport"
)

// FuzzHandleForward: whatever a peer forwards, a (single-node) leader answers
// with a response and never panics, membership requests included (a learner
// the fuzzer adds never counts, and the only voter cannot be removed).
func FuzzHandleForward(f *testing.F) {
	for _, r := range []transport.ForwardRequest{
		{Op: transport.OpPut, Key: []byte("k"), Value: []byte("v"), Ack: api.Ack{Mode: api.AckMajority}},
		{Op: transport.OpPut, Key: []byte("k"), Ack: api.Ack{Mode: api.AckSemiSync, Replicas: 5}},
		{Op: transport.OpPut, Key: []byte("k"), Ack: api.Ack{Mode: 77}, TimeoutMs: 1 << 63},
		{Op: transport.OpDelete, Key: []byte("k"), DefaultAck: true},
		{Op: transport.OpGet, Key: []byte("k")},
		{Op: transport.OpGet},
		{Op: transport.OpTransfer, Key: []byte("nobody")},
		{Op: transport.OpMembers, Key: []byte("list")},
		{Op: transport.OpMembers, Key: []byte("add"), Value: []byte(`{"id":"n2","peer":"127.0.0.1:7002","role":"learner"}`)},
		{Op: transport.OpMembers, Key: []byte("add"), Value: []byte(`{"id":"n 2","peer":"0.0.0.0:1"}`)},
		{Op: transport.OpMembers, Key: []byte("promote"), Value: []byte("n2")},
		{Op: transport.OpMembers, Key: []byte("remove"), Value: []byte("n1")},
		{Op: transport.OpMembers, Key: []byte("drop"), Value: []byte("everything")},
	} {
		f.Add(transport.AppendForwardRequest(nil, &r))
	}
	cfg := soloConfig(f, filepath.Join(f.TempDir(), "data"), []Member{{"n1", "127.0.0.1:7001"}})
	n, err := Start(cfg)
	if err != nil {
		f.Fatal(err)
	}
	defer n.Stop()
	deadline := time.Now().Add(10 * time.Second)
	for n.Status().Role != "leader" {
		if time.Now().After(deadline) {
			f.Fatal("single node never became leader")
		}
		time.Sleep(5 * time.Millisecond)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := transport.DecodeFrame(b, 1<<20)
		if err != nil || fr.Type != transport.FrameForwardRequest {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if resp := n.HandleForward(ctx, "n1", fr.Request); resp == nil {
			t.Fatal("nil response")
		}
	})
}
