package bench

import (
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"
)

func TestHistBucketsAreMonotonic(t *testing.T) {
	prev := -1
	for _, v := range []int64{0, 1, 63, 64, 65, 127, 128, 1000, 1 << 20, 1<<40 + 7, 1<<62 + 1} {
		b := histBucket(v)
		if b < prev {
			t.Fatalf("bucket(%d) = %d, below the previous %d", v, b, prev)
		}
		if b >= histBuckets {
			t.Fatalf("bucket(%d) = %d out of range %d", v, b, histBuckets)
		}
		if got := histValue(b); v >= 64 && (float64(got) < float64(v)*0.96 || float64(got) > float64(v)*1.04) {
			t.Fatalf("value(bucket(%d)) = %d, more than 4%% off", v, got)
		}
		prev = b
	}
}

func TestHistQuantilesMatchSortedSample(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("BENCH_HIST_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("BENCH_HIST_SEED=%q: %v", s, err)
		}
		seed = v
	}
	t.Logf("seed %d (replay: BENCH_HIST_SEED=%d go test -run TestHistQuantilesMatchSortedSample .)", seed, seed)
	r := rand.New(rand.NewPCG(seed, 1))
	var h Hist
	var all []int64
	for range 100000 {
		v := int64(r.ExpFloat64()*float64(time.Millisecond)) + int64(50*time.Microsecond)
		all = append(all, v)
		h.Record(time.Duration(v))
	}
	slices.Sort(all)
	for _, q := range []float64{0.5, 0.99, 0.999} {
		want := float64(all[int(q*float64(len(all)))-1])
		got := float64(h.Quantile(q))
		if got < want*0.95 || got > want*1.05 {
			t.Errorf("seed %d: q%.3f = %v, sorted sample says %v", seed, q, time.Duration(got), time.Duration(want))
		}
	}
	if h.Max() != time.Duration(all[len(all)-1]) {
		t.Errorf("max %v, want %v", h.Max(), time.Duration(all[len(all)-1]))
	}
	var m Hist
	m.Merge(&h)
	m.Merge(&h)
	if m.Count() != 2*h.Count() || m.Quantile(0.5) != h.Quantile(0.5) {
		t.Errorf("merge: count %d p50 %v, want %d %v", m.Count(), m.Quantile(0.5), 2*h.Count(), h.Quantile(0.5))
	}
}
