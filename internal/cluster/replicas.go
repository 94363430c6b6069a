package cluster

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/trireme-db/trireme/client"
)

// StartReplicas starts every read replica that is not running, once the
// voters have a leader; a replica that has not joined yet joins through the
// leader's HTTP address. It starts them one at a time, each once the one
// before is a member: the cluster takes one membership change at a time,
// and a join that finds another in progress fails. It returns once every
// replica is a member (WaitReplicas). ctx bounds the whole: the wait for a
// leader, the joins and the member list.
func (c *Cluster) StartReplicas(ctx context.Context) error {
	if len(c.cfg.Spec.Replicas) == 0 {
		return nil
	}
	leader, err := c.WaitLeader(ctx, "")
	if err != nil {
		return fmt.Errorf("cluster: read replicas join through the leader: %w", err)
	}
	ln, err := c.Node(leader)
	if err != nil {
		return err
	}
	for _, r := range c.cfg.Spec.Replicas {
		if c.Running(r.ID) {
			continue
		}
		if err := c.start(r.ID, c.ReplicaArgs(r, ln.HTTP)); err != nil {
			return err
		}
		if err := c.waitMembers(ctx, []string{r.ID}); err != nil {
			return err
		}
	}
	return c.WaitReplicas(ctx)
}

// WaitReplicas waits until every read replica answers /v1/status (a
// replica that joins listens once the join is committed) and the leader
// lists it in GET /v1/members: as a learner, or as a voter if someone
// promoted it since (trireme member promote). It polls every 50ms.
func (c *Cluster) WaitReplicas(ctx context.Context) error {
	return c.waitMembers(ctx, c.cfg.Spec.ReplicaIDs())
}

// waitMembers waits until nodes ids answer /v1/status and the leader lists
// them as members, and fails if one exits meanwhile.
func (c *Cluster) waitMembers(ctx context.Context, ids []string) error {
	for _, id := range ids {
		if err := c.WaitReady(ctx, id); err != nil {
			return err
		}
	}
	for {
		ms, err := c.client.Members(ctx)
		var missing []string
		if err == nil {
			if missing = unlisted(ids, ms); len(missing) == 0 {
				return nil
			}
			err = fmt.Errorf("the members are %s", formatMembers(ms))
		}
		for _, id := range ids {
			if !c.Running(id) {
				return fmt.Errorf("%w: %s exited (see %s)", ErrNotRunning, id, c.LogPath(id))
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster: %s not members within the deadline (%w): %v (a read replica removed with trireme member remove stays in %s: delete its entry there)",
				strings.Join(orAll(missing, ids), ", "), ctx.Err(), err, SpecFile)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// unlisted returns the ids in want that ms does not hold as a learner or a
// voter.
func unlisted(want []string, ms []client.Member) []string {
	have := map[string]bool{}
	for _, m := range ms {
		if m.Role == client.RoleLearner || m.Role == client.RoleVoter || m.Role == "" {
			have[m.ID] = true
		}
	}
	var out []string
	for _, id := range want {
		if !have[id] {
			out = append(out, id)
		}
	}
	return out
}

// formatMembers renders ms as "n1 (voter), r1 (learner), ...".
func formatMembers(ms []client.Member) string {
	parts := make([]string, len(ms))
	for i, m := range ms {
		role := m.Role
		if role == "" {
			role = client.RoleVoter
		}
		parts[i] = fmt.Sprintf("%s (%s)", m.ID, role)
	}
	return strings.Join(parts, ", ")
}

func orAll(some, all []string) []string {
	if len(some) > 0 {
		return some
	}
	return all
}
