package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/trireme-db/trireme/internal/cluster"
)

// TestUpReplicasFlag checks the --replicas errors that trireme up reports
// before it starts any process.
func TestUpReplicasFlag(t *testing.T) {
	withTwo := t.TempDir() // a cluster with two read replicas
	spec, err := cluster.NewSpec(3, 7001)
	if err != nil {
		t.Fatal(err)
	}
	if spec, err = spec.WithReplicas(2); err != nil {
		t.Fatal(err)
	}
	if err := spec.Save(withTwo); err != nil {
		t.Fatal(err)
	}
	free := t.TempDir() // voters on free ports: no scheme to place replicas on
	fs, err := cluster.FreeSpec(3)
	if err != nil {
		t.Fatal(err)
	}
	if err := fs.Save(free); err != nil {
		t.Fatal(err)
	}
	empty := t.TempDir()
	tests := []struct {
		name     string
		args     []string
		mentions []string
	}{
		{"negative", []string{"up", "--data", empty, "--replicas", "-1"}, []string{"want 0 or more"}},
		{"with --node", []string{"up", "--data", empty, "--replicas", "1", "--node", "n1"}, []string{"exclude each other"}},
		{"too many", []string{"up", "--data", empty, "--replicas", "100"}, []string{"--replicas 100", "0 to 99"}},
		{"fewer than the layout", []string{"up", "--data", withTwo, "--replicas", "1"},
			[]string{"--replicas 1", "2 read replicas (r1, r2)", "trireme member remove ID", cluster.SpecFile}},
		{"voters off the port scheme", []string{"up", "--data", free, "--replicas", "1"},
			[]string{"--replicas 1", "--base-port scheme", "by hand"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errOut := runCLI(tc.args...)
			if code != 1 {
				t.Fatalf("exit %d, want 1; stderr %q", code, errOut)
			}
			for _, m := range tc.mentions {
				if !strings.Contains(errOut, m) {
					t.Errorf("stderr %q does not mention %q", errOut, m)
				}
			}
		})
	}
	// A refused --replicas leaves cluster.json as it was.
	if got, err := cluster.LoadSpec(withTwo); err != nil || len(got.Replicas) != 2 {
		t.Fatalf("%s after a refused --replicas 1: %+v %v", filepath.Join(withTwo, cluster.SpecFile), got, err)
	}
}
