package bench

import (
	"math/bits"
	"time"
)

// histSubBits sets the histogram's resolution: 2^(histSubBits-1) linear
// buckets per power of two, so a recorded value is off by at most 1/32
// (about 3%) of itself. Values below 2^histSubBits ns are exact.
const (
	histSubBits = 6
	histHalf    = 1 << (histSubBits - 1)
	histBuckets = 64 * histHalf // covers every int64
)

// Hist is a log-linear latency histogram in the spirit of HdrHistogram:
// constant memory, O(1) record, quantiles within about 3%. The zero value is
// ready to use. It is not safe for concurrent use: give each worker its own
// and Merge them.
type Hist struct {
	counts [histBuckets]uint64
	n      uint64
	sum    int64
	max    int64
}

func histBucket(v int64) int {
	if v < 1<<histSubBits {
		if v < 0 {
			return 0
		}
		return int(v)
	}
	e := bits.Len64(uint64(v)) - histSubBits
	return e*histHalf + int(v>>e)
}

// histValue is the midpoint of bucket i.
func histValue(i int) int64 {
	if i < 1<<histSubBits {
		return int64(i)
	}
	e := i/histHalf - 1
	m := int64(i - e*histHalf)
	return m<<e + (int64(1)<<e)/2
}

// Record adds one latency.
func (h *Hist) Record(d time.Duration) {
	v := int64(d)
	h.counts[histBucket(v)]++
	h.n++
	h.sum += v
	if v > h.max {
		h.max = v
	}
}

// Merge adds o's values into h.
func (h *Hist) Merge(o *Hist) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.sum += o.sum
	if o.max > h.max {
		h.max = o.max
	}
}

// Count is the number of recorded values.
func (h *Hist) Count() uint64 { return h.n }

// Mean is the average recorded value.
func (h *Hist) Mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(h.sum / int64(h.n))
}

// Max is the largest recorded value (exact).
func (h *Hist) Max() time.Duration { return time.Duration(h.max) }

// Quantile returns the value at quantile q (0 < q <= 1), within the
// histogram's resolution, and never more than Max.
func (h *Hist) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q*float64(h.n) + 0.5)
	if rank < 1 {
		rank = 1
	}
	if rank > h.n {
		rank = h.n
	}
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			v := histValue(i)
			if v > h.max {
				v = h.max
			}
			return time.Duration(v)
		}
	}
	return time.Duration(h.max)
}
