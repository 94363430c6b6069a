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

// sampleMessages are single-leader messages, for frames that carry them.
func sampleMessages() []repl.Message {
	return []repl.Message{
		{Type: repl.MsgHeartbeat, From: "n1", To: "n2", Term: 3, Commit: 9, Context: 77},
		{Type: repl.MsgAppResp, From: "n2", To: "n1", Term: 3, Index: 5, Reject: true, HintTerm: 2, HintIndex: 4},
		{Type: repl.MsgApp, From: "n1", To: "n3", Term: 4, LogTerm: 3, Index: 10, Commit: 9,
			Entries: []entry.Entry{
				{Term: 4, Index: 11, Kind: entry.KindNoop},
				{Term: 4, Index: 12, Kind: entry.KindPut, Key: []byte("k"), Value: []byte("value"), RequestID: 42},
				{Term: 4, Index: 13, Kind: entry.KindDelete, Key: []byte("k")},
			}},
	}
}

// messageFrame is the decoded message frame carrying m.
func messageFrame(m *repl.Message) Frame {
	return Frame{Type: FrameMessage, Payload: &Payload{Engine: EngineSingleLeader, Data: repl.AppendMessage(nil, m)}}
}

func sampleFrames() []Frame {
	msgs := sampleMessages()
	return []Frame{
		{Type: FrameHandshake, Handshake: &Handshake{ClusterID: "c1", NodeID: "n1", HTTPAddr: "127.0.0.1:8080", RESPAddr: "127.0.0.1:6379"}},
		{Type: FrameHandshake, Handshake: &Handshake{}},
		{Type: FrameHandshakeReject, Reject: "unknown node id"},
		messageFrame(&msgs[0]),
		messageFrame(&msgs[1]),
		messageFrame(&msgs[2]),
		// The transport does not read a message frame's body.
		{Type: FrameMessage, Payload: &Payload{Engine: EngineSingleLeader, Data: []byte("not a message")}},
		{Type: FrameMessage, Payload: &Payload{Engine: EngineSingleLeader}}, // empty
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
		// A single-leader payload in a payload frame (no release sends one):
		// delivered like any other.
		{Type: FramePayload, Payload: &Payload{Engine: EngineSingleLeader, From: "n1", To: "n2", Data: []byte("opaque")}},
		{Type: FramePayload, Payload: &Payload{Engine: EngineMultiLeader, From: "n2", To: "n3", Data: []byte{0, 1, 0xff, 0, 7}}},
		{Type: FramePayload, Payload: &Payload{Engine: EngineLeaderless, From: "n3", To: "n1"}}, // empty payload
		{Type: FramePayload, Payload: &Payload{Engine: 200, Data: []byte("x")}},                 // an engine this node does not know
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
	case FrameMessage, FramePayload:
		p := f.Payload
		return appendEngineFrame(dst, f.Type, p.Engine, p.From, p.To, nil, p.Data)
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
	good := AppendPayload(nil, &Payload{Engine: EngineMultiLeader, From: "a", To: "b", Data: []byte("payload")})
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
		{"trailing bytes", mut(func(b []byte) []byte { b = append(b, 0); b[0]++; return b }), 0, ErrMalformedFrame},
		{"a message frame over the limit", msgFrame(&sampleMessages()[2]), 64, ErrFrameTooLarge},
		// The bounds of a message's own fields (type, entry count and
		// lengths, entries) are repl.DecodeMessage's: TestDecodeMessageErrors.
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

// payloadClaiming is a payload frame whose bytes32 length claims n bytes
// and whose frame holds 3 of them.
func payloadClaiming(n uint32) []byte {
	b := AppendPayload(nil, &Payload{Engine: EngineMultiLeader, From: "a", To: "b", Data: []byte("abc")})
	binary.LittleEndian.PutUint32(b[len(b)-3-4:], n)
	return b
}

func TestEngineString(t *testing.T) {
	for e, want := range map[Engine]string{EngineSingleLeader: "single-leader", EngineMultiLeader: "multi-leader",
		EngineLeaderless: "leaderless", 0: "engine(0)", 4: "engine(4)", 255: "engine(255)"} {
		if got := e.String(); got != want {
			t.Errorf("Engine(%d).String() = %q, want %q", uint8(e), got, want)
		}
	}
}

// TestPayloadFrame: payloads of any size up to the frame limit round-trip
// (ReadFrame growing its buffer as the bytes arrive); engine 0, a cut body,
// a payload length that lies and trailing bytes are refused.
func TestPayloadFrame(t *testing.T) {
	for _, n := range []int{0xffff + 1, 3*frameChunk + 17} {
		p := &Payload{Engine: EngineLeaderless, From: "n1", To: "n2", Data: bytes.Repeat([]byte{0x5a}, n)}
		b := AppendPayload(nil, p)
		want := Frame{Type: FramePayload, Payload: p}
		if got, err := DecodeFrame(b, DefaultMaxFrameBytes); err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("%d bytes: DecodeFrame: %v", n, err)
		}
		if got, err := ReadFrame(bytes.NewReader(b), DefaultMaxFrameBytes); err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("%d bytes: ReadFrame: %v", n, err)
		}
		if _, err := DecodeFrame(b, len(b)-5); !errors.Is(err, ErrFrameTooLarge) {
			t.Fatalf("%d bytes, limit one under the frame: %v", n, err)
		}
		for _, cut := range []int{1, 5, 20, frameChunk, frameChunk + 4, len(b) - 1} {
			if cut >= len(b) {
				continue
			}
			if _, err := ReadFrame(bytes.NewReader(b[:cut]), DefaultMaxFrameBytes); !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("%d bytes, stream cut at %d: %v, want io.ErrUnexpectedEOF", n, cut, err)
			}
		}
	}

	// A body cut anywhere, under a length field that agrees with the cut:
	// some field is missing, and the frame is refused.
	for _, fr := range sampleFrames() {
		if fr.Type != FramePayload {
			continue
		}
		b := appendFrame(nil, &fr)
		for n := FrameHeaderSize; n < len(b); n++ {
			c := append([]byte(nil), b[:n]...)
			binary.LittleEndian.PutUint32(c, uint32(n-4))
			if _, err := DecodeFrame(c, 0); !errors.Is(err, ErrMalformedFrame) {
				t.Fatalf("%+v cut to %d of %d bytes: %v", *fr.Payload, n, len(b), err)
			}
		}
	}

	trailing := AppendPayload(nil, &Payload{Engine: EngineMultiLeader, From: "a", To: "b", Data: []byte("v")})
	trailing = append(trailing, 0)
	binary.LittleEndian.PutUint32(trailing, uint32(len(trailing)-4))
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"engine 0", AppendPayload(nil, &Payload{From: "a", To: "b", Data: []byte("v")})},
		{"engine 0, empty", AppendPayload(nil, &Payload{})},
		{"payload length over the frame", payloadClaiming(4)},
		{"payload length of 4 GiB", payloadClaiming(0xffffffff)},
		{"trailing bytes", trailing},
	} {
		if _, err := DecodeFrame(tc.b, 0); !errors.Is(err, ErrMalformedFrame) {
			t.Errorf("%s: %v, want ErrMalformedFrame", tc.name, err)
		}
	}
	// Engines this node does not know decode: the handler decides.
	for _, e := range []Engine{EngineLeaderless + 1, 255} {
		f, err := DecodeFrame(AppendPayload(nil, &Payload{Engine: e, From: "a", To: "b"}), 0)
		if err != nil || f.Payload.Engine != e {
			t.Errorf("engine %d: %v %+v", uint8(e), err, f.Payload)
		}
	}
}

func FuzzDecodeFrame(f *testing.F) {
	for _, fr := range sampleFrames() {
		f.Add(appendFrame(nil, &fr))
	}
	f.Add(AppendPayload(nil, &Payload{From: "a", To: "b", Data: []byte("engine 0")}))
	f.Add(AppendPayload(nil, &Payload{Engine: 255, From: "a", To: "b", Data: bytes.Repeat([]byte{0xab}, 300)}))
	f.Add(payloadClaiming(0xffffffff))
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
