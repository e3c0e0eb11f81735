package dataplane

import (
	"math"
	"time"
)

// histogram counts latencies in 1 µs buckets up to 10 ms (beyond: the
// last bucket), enough for percentiles of a software data path.
type histogram struct {
	buckets [10000]uint64
	n       uint64
	sum     time.Duration
	min     time.Duration
	max     time.Duration
}

func (h *histogram) add(d time.Duration) {
	if d < 0 {
		d = 0
	}
	i := int(d / time.Microsecond)
	if i >= len(h.buckets) {
		i = len(h.buckets) - 1
	}
	h.buckets[i]++
	if h.n == 0 || d < h.min {
		h.min = d
	}
	if d > h.max {
		h.max = d
	}
	h.n++
	h.sum += d
}

// Latency summarises one latency trial.
type Latency struct {
	Samples  uint64  `json:"samples"`
	MinUs    float64 `json:"min_us"`
	AvgUs    float64 `json:"avg_us"`
	P50Us    float64 `json:"p50_us"`
	P90Us    float64 `json:"p90_us"`
	P99Us    float64 `json:"p99_us"`
	P999Us   float64 `json:"p99_9_us"`
	MaxUs    float64 `json:"max_us"`
	Overflow bool    `json:"overflow,omitempty"` // some samples above 10 ms
}

func (h *histogram) summary() Latency {
	if h.n == 0 {
		return Latency{}
	}
	us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
	return Latency{
		Samples: h.n, MinUs: us(h.min), AvgUs: us(h.sum / time.Duration(h.n)), MaxUs: us(h.max),
		P50Us: h.quantile(0.5), P90Us: h.quantile(0.9), P99Us: h.quantile(0.99), P999Us: h.quantile(0.999),
		Overflow: h.buckets[len(h.buckets)-1] > 0,
	}
}

// quantile is the upper edge (µs) of the bucket holding quantile q.
func (h *histogram) quantile(q float64) float64 {
	want := uint64(math.Ceil(q * float64(h.n)))
	var seen uint64
	for i, c := range h.buckets {
		seen += c
		if seen >= want && c > 0 {
			return float64(i + 1)
		}
	}
	return float64(len(h.buckets))
}
