//go:build linux

package etcdtest

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// TestServerLifecycle checks what the coordinator and system tests rely on:
// a restart keeps the data, a paused etcd answers nothing until resumed, and
// Kill leaves nothing running.
func TestServerLifecycle(t *testing.T) {
	s := Start(t)
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{s.Endpoint()}, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	get := func(d time.Duration) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		resp, err := cli.Get(ctx, "k")
		if err != nil {
			return "", err
		}
		if len(resp.Kvs) == 0 {
			return "", nil
		}
		return string(resp.Kvs[0].Value), nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := cli.Put(ctx, "k", "v"); err != nil {
		t.Fatalf("put: %v", err)
	}

	s.Restart()
	// The client reconnects on its own; give it a few seconds.
	deadline := time.Now().Add(10 * time.Second)
	for {
		v, err := get(time.Second)
		if err == nil && v == "v" {
			break
		}
		if err == nil || time.Now().After(deadline) {
			t.Fatalf("after Restart: get k = %q, %v; want v (the data directory kept)", v, err)
		}
		time.Sleep(50 * time.Millisecond)
	}

	s.Pause()
	if v, err := get(300 * time.Millisecond); err == nil {
		t.Fatalf("a paused etcd answered: %q", v)
	}
	s.Resume()
	if v, err := get(5 * time.Second); err != nil || v != "v" {
		t.Fatalf("after Resume: get k = %q, %v", v, err)
	}

	s.Kill()
	if s.Running() {
		t.Fatal("Running after Kill")
	}
	if _, err := get(300 * time.Millisecond); err == nil {
		t.Fatal("a killed etcd answered")
	}
	s.Kill() // not running: harmless
}
