package api

import "fmt"

// Reached describes, for a person, what a write achieved: where it is
// durable and whether it is committed. Client protocols use it in the
// replies to writes whose ack mode was not met in time.
func (r WriteResult) Reached() string {
	where := "not durable anywhere yet"
	switch {
	case r.LeaderDurable && r.Replicas > 0:
		where = fmt.Sprintf("durable on the leader and %d follower(s)", r.Replicas)
	case r.LeaderDurable:
		where = "durable on the leader only"
	case r.Replicas > 0:
		where = fmt.Sprintf("durable on %d follower(s), not yet on the leader", r.Replicas)
	}
	commit := "not committed"
	if r.Committed {
		commit = "committed (majority)"
	}
	return fmt.Sprintf("%s, %s, at index %d term %d", where, commit, r.Index, r.Term)
}
