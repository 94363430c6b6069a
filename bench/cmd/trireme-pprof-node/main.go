// Command trireme-pprof-node runs one Trireme node like `trireme node`, with
// Go's profiler on its HTTP address (/debug/pprof/), for finding what bounds
// the node under benchmark load. It takes the flags the local cluster
// supervisor passes (`trireme-pprof-node node --id ... --data ...
// --cluster ... --http ... --resp ... [--resp-peers ...] [--log-level ...]`)
// and uses the node's defaults for everything else. Block and mutex
// profiling are on (rate 10µs, fraction 1/10): they cost some throughput.
//
//	go build -o /tmp/pprof-node ./cmd/trireme-pprof-node
//	go run ./cmd/trireme-bench -trireme-bin /tmp/pprof-node -systems trireme ...
//	go tool pprof http://HTTP_ADDR/debug/pprof/profile?seconds=10
package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/trireme-db/trireme/internal/api/httpapi"
	"github.com/trireme-db/trireme/internal/api/resp"
	"github.com/trireme-db/trireme/internal/node"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) == 0 || args[0] != "node" {
		fmt.Fprintln(os.Stderr, "usage: trireme-pprof-node node --id ID --data DIR --cluster ... --http ADDR --resp ADDR")
		return 2
	}
	fs := flag.NewFlagSet("node", flag.ContinueOnError)
	id := fs.String("id", "", "node id")
	data := fs.String("data", "", "data directory")
	clusterFlag := fs.String("cluster", "", "id=host:port,...")
	httpAddr := fs.String("http", "", "HTTP address (API and /debug/pprof/)")
	respAddr := fs.String("resp", "", "RESP address")
	fs.String("resp-peers", "", "ignored")
	logLevel := fs.String("log-level", "warn", "log level")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintln(os.Stderr, "--log-level:", err)
		return 2
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	members, err := node.ParseCluster(*clusterFlag)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	cfg := node.DefaultConfig()
	cfg.ID, cfg.DataDir, cfg.Cluster, cfg.HTTPAddr, cfg.RESPAddr, cfg.Logger = *id, *data, members, *httpAddr, *respAddr, logger
	if err := cfg.Validate(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	runtime.SetBlockProfileRate(int((10 * time.Microsecond).Nanoseconds()))
	runtime.SetMutexProfileFraction(10)
	hln, err := net.Listen("tcp", *httpAddr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	rln, err := net.Listen("tcp", *respAddr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	n, err := node.Start(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting node:", err)
		return 1
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	api := httpapi.New(n, n.Metrics(), logger)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/debug/") {
			http.NotFound(w, r)
			return
		}
		api.ServeHTTP(w, r)
	})
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = hs.Serve(hln) }()
	rcfg := resp.DefaultConfig()
	rcfg.Logger = logger
	rs := resp.New(n, rcfg)
	go func() { _ = rs.Serve(rln) }()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	code := 0
	select {
	case <-sig:
	case err := <-n.Fatal():
		logger.Error("fatal", "err", err)
		code = 1
	}
	hs.Close()
	rs.Close()
	if err := n.Stop(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		logger.Error("stop", "err", err)
		code = 1
	}
	return code
}
