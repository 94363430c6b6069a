package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// respDoer runs SET/GET (and optionally WAIT) on one Redis-protocol connection.
type respDoer struct {
	c    *redis.Client
	wait int // if > 0, each SET is followed by WAIT wait (pipelined)
}

// dialRESP opens a one-connection go-redis client to addr; setup runs on
// the connection once it is established (e.g. TRIREME.ACK), and the first
// PING makes sure it did.
func dialRESP(ctx context.Context, addr string, setup [][]any) (*redis.Client, error) {
	c := redis.NewClient(&redis.Options{
		Addr: addr, PoolSize: 1, MinIdleConns: 0, Protocol: 2, DisableIdentity: true,
		MaxRetries: -1, DialTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 30 * time.Second, ContextTimeoutEnabled: true,
		OnConnect: func(ctx context.Context, cn *redis.Conn) error {
			for _, args := range setup {
				if err := cn.Do(ctx, args...).Err(); err != nil {
					return fmt.Errorf("%v: %w", args, err)
				}
			}
			return nil
		},
	})
	if err := c.Ping(ctx).Err(); err != nil {
		c.Close()
		return nil, fmt.Errorf("%s: %w", addr, err)
	}
	return c, nil
}

func (d *respDoer) Write(ctx context.Context, key string, value []byte) error {
	if d.wait == 0 {
		return d.c.Set(ctx, key, value, 0).Err()
	}
	var w *redis.Cmd
	_, err := d.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, key, value, 0)
		w = p.Do(ctx, "WAIT", d.wait, 5000)
		return nil
	})
	if err != nil {
		return err
	}
	n, err := w.Int()
	if err != nil {
		return err
	}
	if n < d.wait {
		return fmt.Errorf("WAIT %d: only %d replicas acknowledged", d.wait, n)
	}
	return nil
}

func (d *respDoer) Read(ctx context.Context, key string) error {
	return d.c.Get(ctx, key).Err()
}

func (d *respDoer) Close() error { return d.c.Close() }

// respVariant opens worker connections to addrs (worker i uses
// addrs[i%len(addrs)]), each set up with setup, WAITing for wait replicas
// after every SET when wait > 0.
func respVariant(system, name string, addrs func() []string, setup [][]any, wait int, pids func() []int) Variant {
	return Variant{System: system, Name: name, Pids: pids, Open: func(ctx context.Context, i, n int) (Doer, error) {
		as := addrs()
		c, err := dialRESP(ctx, as[i%len(as)], setup)
		if err != nil {
			return nil, err
		}
		return &respDoer{c: c, wait: wait}, nil
	}}
}

// quietRedisLog discards go-redis's own log lines.
type quietRedisLog struct{}

func (quietRedisLog) Printf(context.Context, string, ...any) {}

// SilenceRedisLog turns go-redis's logging off for the whole program: it
// prints a line for every failed dial, and a failover makes hundreds of
// them, which would drown the progress lines. Call it from main.
func SilenceRedisLog() { redis.SetLogger(quietRedisLog{}) }
