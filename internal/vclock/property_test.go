package vclock

import (
	"flag"
	"fmt"
	"math/rand"
	"testing"

	"github.com/trireme-db/trireme/internal/hlc"
)

var (
	flagSeed  = flag.Int64("vclock.seed", 0, "run the property tests on this seed only")
	flagSeeds = flag.Int("vclock.seeds", 200, "number of seeds for the property tests")
)

// forSeeds runs fn on each seed and, on failure, prints how to replay it.
func forSeeds(t *testing.T, name string, fn func(r *rand.Rand) error) {
	seeds := []int64{}
	if *flagSeed != 0 {
		seeds = append(seeds, *flagSeed)
	} else {
		for s := int64(1); s <= int64(*flagSeeds); s++ {
			seeds = append(seeds, s)
		}
	}
	for _, s := range seeds {
		if err := fn(rand.New(rand.NewSource(s))); err != nil {
			t.Fatalf("seed %d: %v\nreplay: go test ./internal/vclock -run '^%s$' -vclock.seed=%d", s, err, name, s)
		}
	}
}

// history is a random run of replicas of one key: writes with fresh, stale
// or empty contexts, and full-state syncs between replicas.
type history struct {
	replicas  []Set
	snapshots []Set
	writes    []write
}

type write struct {
	sib Sibling
	ctx Vector // what the writer had seen (without its own dot)
}

var nodes = []string{"a", "b", "c", "d"}

func randomHistory(r *rand.Rand, steps int) *history {
	h := &history{replicas: make([]Set, 1+r.Intn(len(nodes)))}
	var clock int64
	for range steps {
		i := r.Intn(len(h.replicas))
		switch op := r.Intn(10); {
		case op < 6: // write at i
			var ctx Vector
			switch r.Intn(3) {
			case 0:
				ctx = h.replicas[i].Context
			case 1:
				if len(h.snapshots) > 0 {
					ctx = h.snapshots[r.Intn(len(h.snapshots))].Context
				}
			}
			node := nodes[i]
			clock++
			s := Sibling{Dot: Dot{node, h.replicas[i].Context.Get(node) + 1}, Time: hlc.Timestamp{Wall: clock}, Deleted: r.Intn(5) == 0}
			if !s.Deleted {
				s.Value = []byte(fmt.Sprint(clock))
			}
			h.writes = append(h.writes, write{s, ctx})
			h.replicas[i] = Update(h.replicas[i], ctx, s)
		default: // i pulls from j
			j := r.Intn(len(h.replicas))
			h.replicas[i] = Sync(h.replicas[i], h.replicas[j])
		}
		h.snapshots = append(h.snapshots, h.replicas[i])
	}
	return h
}

func TestSyncLattice(t *testing.T) {
	forSeeds(t, "TestSyncLattice", func(r *rand.Rand) error {
		h := randomHistory(r, 60)
		pick := func() Set { return h.snapshots[r.Intn(len(h.snapshots))] }
		for range 50 {
			a, b, c := pick(), pick(), pick()
			for _, s := range []Set{a, b, c, Sync(a, b)} {
				if err := s.Validate(); err != nil {
					return err
				}
			}
			if !Sync(a, b).Equal(Sync(b, a)) {
				return fmt.Errorf("not commutative: %v | %v", a, b)
			}
			if !Sync(Sync(a, b), c).Equal(Sync(a, Sync(b, c))) {
				return fmt.Errorf("not associative: %v | %v | %v", a, b, c)
			}
			if !Sync(a, a).Equal(a) {
				return fmt.Errorf("not idempotent: %v", a)
			}
		}
		return nil
	})
}

// TestUpdateSyncKeepsUnoverwritten: once every replica has synced with
// every other, each replica holds exactly the writes no write's context
// covers (the multi-value register's specification); nothing else is lost.
func TestUpdateSyncKeepsUnoverwritten(t *testing.T) {
	forSeeds(t, "TestUpdateSyncKeepsUnoverwritten", func(r *rand.Rand) error {
		h := randomHistory(r, 80)
		all := Set{}
		for _, s := range h.replicas {
			all = Sync(all, s)
		}
		for i := range h.replicas {
			h.replicas[i] = Sync(h.replicas[i], all)
			if !h.replicas[i].Equal(all) {
				return fmt.Errorf("replica %d did not converge: %v vs %v", i, h.replicas[i], all)
			}
		}
		var want []Dot
		for _, w := range h.writes {
			covered := false
			for _, o := range h.writes {
				if o.ctx.Covers(w.sib.Dot) {
					covered = true
					break
				}
			}
			if !covered {
				want = append(want, w.sib.Dot)
			}
			if !all.Context.Covers(w.sib.Dot) {
				return fmt.Errorf("write %v missing from the context %v", w.sib.Dot, all.Context)
			}
		}
		if len(want) != len(all.Siblings) {
			return fmt.Errorf("siblings %v, want dots %v", all, want)
		}
		for _, d := range want {
			if _, ok := all.Find(d); !ok {
				return fmt.Errorf("write %v lost: %v", d, all)
			}
		}
		return nil
	})
}

func TestCounterLattice(t *testing.T) {
	forSeeds(t, "TestCounterLattice", func(r *rand.Rand) error {
		reps := make([]Counter, 3)
		var snaps []Counter
		for range 60 {
			i := r.Intn(len(reps))
			switch r.Intn(6) {
			case 0:
				reps[i] = JoinCounter(reps[i], reps[i].ResetDelta())
			case 1, 2:
				reps[i] = JoinCounter(reps[i], reps[r.Intn(len(reps))])
			default:
				reps[i] = JoinCounter(reps[i], reps[i].IncrDelta(nodes[i], r.Int63n(21)-10))
			}
			snaps = append(snaps, reps[i])
		}
		for range 30 {
			a, b, c := snaps[r.Intn(len(snaps))], snaps[r.Intn(len(snaps))], snaps[r.Intn(len(snaps))]
			if !JoinCounter(a, b).Equal(JoinCounter(b, a)) || !JoinCounter(JoinCounter(a, b), c).Equal(JoinCounter(a, JoinCounter(b, c))) || !JoinCounter(a, a).Equal(a) {
				return fmt.Errorf("counter join not a semilattice: %v %v %v", a, b, c)
			}
		}
		return nil
	})
}
