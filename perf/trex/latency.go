package trex

import (
	"context"
	"fmt"
	"math"
	"sort"
	"strconv"
)

// Latency is one packet group's latency as TRex measured it (µs), since
// the group's stream was added.
type Latency struct {
	Sent     uint64 // latency frames sent
	Received uint64 // latency frames received
	MinUs    float64
	AvgUs    float64
	MaxUs    float64
	JitterUs float64
	// Histogram maps a bucket's lower edge (µs) to its count; TRex's
	// buckets are 10 µs wide up to 100, then a decade split in ten.
	Histogram map[float64]uint64
}

// Quantile is the upper edge (µs) of the histogram bucket holding
// quantile q (the next bucket's lower edge; the maximum for the last).
func (l Latency) Quantile(q float64) float64 {
	edges := make([]float64, 0, len(l.Histogram))
	var n uint64
	for e, c := range l.Histogram {
		edges = append(edges, e)
		n += c
	}
	if n == 0 {
		return 0
	}
	sort.Float64s(edges)
	want := uint64(math.Ceil(q * float64(n)))
	var seen uint64
	for _, e := range edges {
		seen += l.Histogram[e]
		if seen >= want {
			return min(bucketTop(e), l.MaxUs)
		}
	}
	return l.MaxUs
}

// bucketTop is the upper edge of TRex's bucket starting at e: 10 µs wide
// below 100 µs, then a tenth of the decade (100-199, ..., 1000-1999).
func bucketTop(e float64) float64 {
	if e < 100 {
		return e + 10
	}
	return e + math.Pow(10, math.Floor(math.Log10(e)))
}

type pgidReply struct {
	FlowStats map[string]struct {
		RP map[string]uint64 `json:"rp"`
		TP map[string]uint64 `json:"tp"`
	} `json:"flow_stats"`
	Latency map[string]latReply `json:"latency"`
}

type latReply struct {
	Lat *struct {
		Average   float64           `json:"average"`
		Histogram map[string]uint64 `json:"histogram"`
		Jit       float64           `json:"jit"`
		TotalMax  float64           `json:"total_max"`
		TotalMin  float64           `json:"total_min"`
	} `json:"lat"`
}

// PGIDStats reads the latency of a packet group.
func (c *Client) PGIDStats(ctx context.Context, pgid uint32) (Latency, error) {
	var r pgidReply
	if err := c.Call(ctx, "get_pgid_stats", map[string]any{"pgids": []uint32{pgid}}, &r); err != nil {
		return Latency{}, err
	}
	return latencyOf(pgid, &r)
}

// latencyOf reads packet group pgid's latency out of a get_pgid_stats
// reply. TRex's total_max can lag its histogram (0 with 2,001 frames
// counted, seen in CI): the maximum is at least the lower edge of the
// highest bucket that holds a frame, and the minimum at most the lowest's
// upper edge.
func latencyOf(pgid uint32, r *pgidReply) (Latency, error) {
	key := strconv.FormatUint(uint64(pgid), 10)
	l, ok := r.Latency[key]
	if !ok || l.Lat == nil {
		return Latency{}, fmt.Errorf("trex: no latency for packet group %d", pgid)
	}
	out := Latency{MinUs: l.Lat.TotalMin, AvgUs: l.Lat.Average, MaxUs: l.Lat.TotalMax, JitterUs: l.Lat.Jit, Histogram: map[float64]uint64{}}
	lo, hi := math.Inf(1), math.Inf(-1)
	for k, v := range l.Lat.Histogram {
		e, err := strconv.ParseFloat(k, 64)
		if err != nil {
			return Latency{}, fmt.Errorf("trex: latency histogram bucket %q: %w", k, err)
		}
		out.Histogram[e] = v
		if v > 0 {
			lo, hi = min(lo, e), max(hi, e)
		}
	}
	if hi > out.MaxUs {
		out.MaxUs = hi
	}
	if lo < math.Inf(1) && (out.MinUs <= 0 || out.MinUs > bucketTop(lo)) {
		out.MinUs = lo
	}
	for _, n := range r.FlowStats[key].RP {
		out.Received += n
	}
	for _, n := range r.FlowStats[key].TP {
		out.Sent += n
	}
	return out, nil
}
