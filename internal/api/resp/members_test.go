package resp

import (
	"context"
	"strings"
	"testing"

	"github.com/trireme-db/trireme/internal/api"
	"github.com/trireme-db/trireme/internal/api/apitest"
)

// Learners are replicas to Redis clients: INFO replication lists them as
// slaveN lines with Trireme's fields after Redis's, ROLE as replicas.
func TestReplicationShowsLearners(t *testing.T) {
	f := apitest.NewFake("n2", "n3")
	rdb := mustClient(t, mustServe(t, f))
	ctx := context.Background()
	for range 3 {
		rdb.Set(ctx, "k", "v", 0)
	}
	if _, err := f.AddMember(ctx, api.MemberSpec{ID: "n4", Peer: "127.0.0.1:7004", RESP: "127.0.0.1:6004", Role: api.RoleLearner}); err != nil {
		t.Fatal(err)
	}
	f.SetMemberProgress("n4", 1, api.MemberReplicate, 0, 0)

	info, err := rdb.Info(ctx, "replication").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"connected_slaves:3\r\n",
		"slave0:ip=127.0.0.1,port=6002,state=online,offset=3,lag=0,trireme_id=n2,trireme_role=voter,trireme_lag_entries=0\r\n",
		// The learner's address comes from the membership, not Config.PeerRESP.
		"slave2:ip=127.0.0.1,port=6004,state=online,offset=1,lag=0,trireme_id=n4,trireme_role=learner,trireme_lag_entries=2\r\n",
		"trireme_connected_learners:1\r\n",
		"master_repl_offset:3\r\n",
	} {
		if !strings.Contains(info, want) {
			t.Fatalf("INFO replication lacks %q:\n%s", want, info)
		}
	}

	role, err := rdb.Do(ctx, "ROLE").Slice()
	if err != nil || len(role) != 3 || role[0] != "master" || role[1] != int64(3) {
		t.Fatalf("ROLE: %v %v", role, err)
	}
	replicas, _ := role[2].([]any)
	if len(replicas) != 3 {
		t.Fatalf("ROLE replicas: %v", role[2])
	}
	learner, _ := replicas[2].([]any)
	if len(learner) != 3 || learner[0] != "127.0.0.1" || learner[1] != "6004" || learner[2] != "1" {
		t.Fatalf("ROLE learner entry: %v (want Redis's three fields: ip, port, offset)", learner)
	}
}
