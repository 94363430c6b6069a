package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/trireme-db/trireme/client"
	"github.com/trireme-db/trireme/internal/cluster"
	"github.com/trireme-db/trireme/internal/node"
)

// The layout of a local cluster (DATA/cluster.json, written by trireme up)
// lists read replicas that the cluster itself may have removed since. These
// helpers keep the two in step: trireme member remove drops a removed
// replica's entry, and trireme up skips (and drops) a replica that the
// cluster's members no longer list. A replica's data directory is never
// touched: only its entry in the layout goes.

// layoutDrop is what dropFromLayout did with a removed member's entry.
type layoutDrop int

const (
	layoutAbsent  layoutDrop = iota // the layout has no node with that id
	layoutDropped                   // a read replica: its entry is gone
	layoutVoter                     // a voter: its entry stays (see dropFromLayout)
)

// dropFromLayout removes read replica id from DATA/cluster.json, which it
// rereads first (so that it keeps what changed since the command started)
// and writes atomically (cluster.Spec.Save: temporary file, fsync, rename,
// directory fsync), and returns the entry it dropped. A voter's entry
// stays: every voter starts with all the layout's voters as --cluster and
// their ports follow --base-port by position, so dropping one would change
// the others' flags and ports.
func dropFromLayout(data, id string) (layoutDrop, cluster.NodeSpec, error) {
	spec, err := cluster.LoadSpec(data)
	if err != nil {
		return layoutAbsent, cluster.NodeSpec{}, err
	}
	if slices.Contains(spec.IDs(), id) {
		return layoutVoter, cluster.NodeSpec{}, nil
	}
	i := slices.IndexFunc(spec.Replicas, func(r cluster.NodeSpec) bool { return r.ID == id })
	if i < 0 {
		return layoutAbsent, cluster.NodeSpec{}, nil
	}
	if err := withoutReplicas(spec, []string{id}).Save(data); err != nil {
		return layoutAbsent, cluster.NodeSpec{}, err
	}
	return layoutDropped, spec.Replicas[i], nil
}

// withoutReplicas returns spec without the read replicas ids.
func withoutReplicas(spec cluster.Spec, ids []string) cluster.Spec {
	out := cluster.Spec{Nodes: slices.Clone(spec.Nodes)}
	for _, r := range spec.Replicas {
		if !slices.Contains(ids, r.ID) {
			out.Replicas = append(out.Replicas, r)
		}
	}
	return out
}

// removedReplicas returns the read replicas of spec that the members ms
// (GET /v1/members) no longer list, as a learner or a voter, although their
// data directory under data records that they joined (internal/node's join
// record): the cluster removed them. A replica that never joined (new in
// the layout) is not one of them: it joins when it starts. A join record
// that cannot be read is left for the node to report.
func removedReplicas(spec cluster.Spec, data string, ms []client.Member) []cluster.NodeSpec {
	listed := map[string]bool{}
	for _, m := range ms {
		listed[m.ID] = true
	}
	var out []cluster.NodeSpec
	for _, r := range spec.Replicas {
		if listed[r.ID] {
			continue
		}
		if js, _, err := node.LoadJoin(filepath.Join(data, r.Dir)); err == nil && js != nil {
			out = append(out, r)
		}
	}
	return out
}

// memberList renders ms as "n1 (voter), r1 (learner)" for a message.
func memberList(ms []client.Member) string {
	parts := make([]string, len(ms))
	for i, m := range ms {
		parts[i] = fmt.Sprintf("%s (%s)", m.ID, roleOf(m.Role))
	}
	return strings.Join(parts, ", ")
}

// checkNewReplicaDirs refuses new read replicas (those of grown that old
// lacks) whose data directory under data exists and is not empty: it holds
// a node's data, typically a replica removed earlier whose id the layout
// gives again. Started there, the node would resume as the removed member.
func checkNewReplicaDirs(old, grown cluster.Spec, data string) error {
	for _, r := range grown.Replicas {
		if old.IsReplica(r.ID) {
			continue
		}
		dir := filepath.Join(data, r.Dir)
		entries, err := os.ReadDir(dir)
		if err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("new read replica %s: %w", r.ID, err)
		}
		if len(entries) > 0 {
			return fmt.Errorf("new read replica %s would use %s, which holds a node's data (a read replica removed earlier?): "+
				"move that directory aside, or remove it if its data is not needed, then run trireme up again", r.ID, dir)
		}
	}
	return nil
}
