package transport

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"reflect"
	"testing"

	"github.com/trireme-db/trireme/internal/api"
	"github.com/trireme-db/trireme/internal/command"
	"github.com/trireme-db/trireme/internal/entry"
	"github.com/trireme-db/trireme/internal/repl"
)

func sampleFrames() []Frame {
	return []Frame{
		{Type: FrameHandshake, Handshake: &Handshake{ClusterID: "c1", NodeID: "n1", HTTPAddr: "127.0.0.1:8080", RESPAddr: "127.0.0.1:6379"}},
		{Type: FrameHandshake, Handshake: &Handshake{}},
		{Type: FrameHandshakeReject, Reject: "unknown node id"},
		{Type: FrameMessage, Message: &repl.Message{Type: repl.MsgHeartbeat, From: "n1", To: "n2", Term: 3, Commit: 9, Context: 77}},
		{Type: FrameMessage, Message: &repl.Message{Type: repl.MsgAppResp, From: "n2", To: "n1", Term: 3, Index: 5, Reject: true, HintTerm: 2, HintIndex: 4}},
		{Type: FrameMessage, Message: &repl.Message{Type: repl.MsgApp, From: "n1", To: "n3", Term: 4, LogTerm: 3, Index: 10, Commit: 9,
			Entries: []entry.Entry{
				{Term: 4, Index: 11, Kind: entry.KindNoop},
				{Term: 4, Index: 12, Kind: entry.KindPut, Key: []byte("k"), Value: []byte("value"), RequestID: 42},
				{Term: 4, Index: 13, Kind: entry.KindDelete, Key: []byte("k")},
			}}},
		{Type: FrameForwardRequest, Request: &ForwardRequest{ID: 7, Op: OpPut, Key: []byte("a"), Value: []byte("b"),
			Ack: api.Ack{Mode: api.AckSemiSync, Replicas: 2}, TimeoutMs: 1500}},
		{Type: FrameForwardRequest, Request: &ForwardRequest{ID: 8, Op: OpGet, Key: []byte("a"), DefaultAck: true, Consistency: api.Linearizable}},
		{Type: FrameForwardResponse, Response: &ForwardResponse{ID: 7, Leader: "n1",
			Write: api.WriteResult{Index: 12, Term: 4, Durability: "semi-sync", Replicas: 2, Committed: true, LeaderDurable: true}}},
		{Type: FrameForwardResponse, Response: &ForwardResponse{ID: 8, Code: api.CodeNotLeader, Message: "not the leader", Leader: "n2",
			Read: api.ReadResult{Found: true, Value: []byte("v"), Index: 3, LagEntries: 1, LagMillis: -5}}},
		{Type: FrameForwardRequest, Request: &ForwardRequest{ID: 9, Op: OpGet, Key: []byte("a"), Consistency: api.Session,
			Token: api.Token{Term: 3, Index: 40}}},
		{Type: FrameForwardRequest, Request: &ForwardRequest{ID: 10, Op: OpGet, Key: []byte("a"), Consistency: api.Bounded,
			MaxLagNanos: 5e8, MaxLagEntries: 7}},
		{Type: FrameForwardRequest, Request: &ForwardRequest{ID: 11, Op: OpCommand, Key: []byte("n"), Value: []byte{1, 3}}},
		{Type: FrameForwardResponse, Response: &ForwardResponse{ID: 9, Leader: "n1",
			Read: api.ReadResult{Found: true, Value: []byte("v"), Index: 3, Token: api.Token{Term: 3, Index: 41}}}},
		{Type: FrameForwardResponse, Response: &ForwardResponse{ID: 11, Leader: "n1", CmdSet: true,
			Write: api.WriteResult{Index: 50, Term: 3, Durability: "majority", Committed: true, LeaderDurable: true,
				Cmd: command.Result{Applied: true, Index: 50, Version: 50, Int: 42, Old: []byte("41"), OldFound: true}}}},
		// Error codes added after the first release, up to the last.
		{Type: FrameForwardResponse, Response: &ForwardResponse{ID: 12, Code: api.CodeNotEnoughReplicas,
			Message: "not enough replicas for the ack mode", Leader: "n1"}},
		{Type: FrameForwardResponse, Response: &ForwardResponse{ID: 13, Code: api.CodeLast, Message: "unknown peer", Leader: "n1"}},
	}
}

func appendFrame(dst []byte, f *Frame) []byte {
	switch f.Type {
	case FrameHandshake:
		return AppendHandshake(dst, f.Handshake)
	case FrameStreamHandshake:
		return AppendStreamHandshake(dst, f.Handshake)
	case FrameHandshakeReject:
		return AppendHandshakeReject(dst, f.Reject)
	case FrameMessage:
		return AppendMessage(dst, f.Message)
	case FrameForwardRequest:
		return AppendForwardRequest(dst, f.Request)
	case FrameForwardResponse:
		return AppendForwardResponse(dst, f.Response)
	}
	panic("unknown frame type")
}

func TestFrameRoundTrip(t *testing.T) {
	for _, f := range sampleFrames() {
		t.Run(f.Type.String(), func(t *testing.T) {
			b := appendFrame([]byte("prefix"), &f)[len("prefix"):]
			got, err := DecodeFrame(b, DefaultMaxFrameBytes)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if !reflect.DeepEqual(got, f) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", got, f)
			}
			// ReadFrame over a stream of two frames gives both back.
			r := bytes.NewReader(append(append([]byte{}, b...), b...))
			for i := 0; i < 2; i++ {
				got, err := ReadFrame(r, DefaultMaxFrameBytes)
				if err != nil || !reflect.DeepEqual(got, f) {
					t.Fatalf("ReadFrame %d: %v, %+v", i, err, got)
				}
			}
			// Every truncation is refused, never a panic.
			for n := 0; n < len(b); n++ {
				if _, err := DecodeFrame(b[:n], 0); err == nil {
					t.Fatalf("truncated to %d of %d bytes: decoded without error", n, len(b))
				}
			}
		})
	}
}

func TestDecodeFrameErrors(t *testing.T) {
	good := AppendMessage(nil, &repl.Message{Type: repl.MsgApp, From: "a", To: "b",
		Entries: []entry.Entry{{Term: 1, Index: 1, Kind: entry.KindPut, Key: []byte("k")}}})
	mut := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	tests := []struct {
		name string
		b    []byte
		max  int
		want error
	}{
		{"too large", good, 8, ErrFrameTooLarge},
		{"short", good[:3], 0, ErrMalformedFrame},
		{"length mismatch", mut(func(b []byte) []byte { b[0]++; return b }), 0, ErrMalformedFrame},
		{"unknown frame type", mut(func(b []byte) []byte { b[4] = 99; return b }), 0, ErrMalformedFrame},
		{"unknown message type", mut(func(b []byte) []byte { b[5] = 0; return b }), 0, ErrMalformedFrame},
		{"trailing bytes", mut(func(b []byte) []byte { b = append(b, 0); b[0]++; return b }), 0, ErrMalformedFrame},
		{"bad entry kind", mut(func(b []byte) []byte { b[len(b)-(entry.HeaderSize+1)+1] = 0; return b }), 0, ErrMalformedFrame},
		{"huge entry count", mut(func(b []byte) []byte {
			off := len(b) - (4 + entry.HeaderSize + 1) - 4
			b[off], b[off+1], b[off+2], b[off+3] = 0xff, 0xff, 0xff, 0x7f
			return b
		}), 0, ErrMalformedFrame},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeFrame(tc.b, tc.max)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
	// An error code past the last one this node knows (a newer leader's) is
	// kept, not refused: refusing the frame would drop the connection and
	// make a forwarded write's outcome unknown during a rolling upgrade.
	for _, code := range []api.Code{api.CodeLast, api.CodeLast + 1, 255} {
		b := AppendForwardResponse(nil, &ForwardResponse{ID: 1, Code: code, Message: "m"})
		f, err := DecodeFrame(b, 0)
		if err != nil || f.Response.Code != code {
			t.Errorf("forward response with error code %d: %v", code, err)
		}
	}
	if _, err := ReadFrame(bytes.NewReader([]byte{0xff, 0xff, 0xff, 0x7f, 3}), 1024); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("ReadFrame of an oversized frame: %v", err)
	}
}

func FuzzDecodeFrame(f *testing.F) {
	for _, fr := range sampleFrames() {
		f.Add(appendFrame(nil, &fr))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := DecodeFrame(b, 1<<20)
		if err != nil {
			return
		}
		// A frame that decodes re-encodes to bytes that decode to the same frame.
		b2 := appendFrame(nil, &fr)
		fr2, err := DecodeFrame(b2, 0)
		if err != nil {
			t.Fatalf("re-encoded frame does not decode: %v", err)
		}
		if !reflect.DeepEqual(fr, fr2) {
			t.Fatalf("re-encode changed the frame:\n%+v\n%+v", fr, fr2)
		}
	})
}

// FuzzReadFrame: reading a frame from a stream (whose buffer grows as the
// bytes arrive) gives what decoding the same bytes at once gives, and a
// length field alone (up to 16 MiB) is refused or waits for its bytes.
func FuzzReadFrame(f *testing.F) {
	for _, fr := range sampleFrames() {
		f.Add(appendFrame(nil, &fr), uint32(DefaultMaxFrameBytes))
	}
	f.Add([]byte{0, 0, 0, 1, byte(FrameMessage)}, uint32(DefaultMaxFrameBytes)) // a 16 MiB claim, no body
	f.Add([]byte{0, 0, 0, 1, byte(FrameHandshake)}, uint32(MaxHandshakeBytes))
	f.Fuzz(func(t *testing.T, b []byte, limit uint32) {
		limit = max(limit%(DefaultMaxFrameBytes+1), 1024)
		got, err := ReadFrame(bytes.NewReader(b), int(limit))
		if len(b) < 4 {
			if err == nil {
				t.Fatal("a frame from fewer than 4 bytes")
			}
			return
		}
		n := uint64(binary.LittleEndian.Uint32(b))
		switch {
		case n == 0 || n > uint64(limit):
			if err == nil {
				t.Fatalf("length %d (limit %d) accepted", n, limit)
			}
		case uint64(len(b)) < 4+n:
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("short frame: %v, want io.ErrUnexpectedEOF", err)
			}
		default:
			want, werr := DecodeFrame(b[:4+n], int(limit))
			if (err == nil) != (werr == nil) || err == nil && !reflect.DeepEqual(got, want) {
				t.Fatalf("ReadFrame %+v, %v; DecodeFrame %+v, %v", got, err, want, werr)
			}
		}
	})
}
