package memif

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

// BenchmarkGoToGo measures one Go transmitter (server) feeding one Go
// receiver (client) through a ring; b.N frames cross per run. Compare
// against cmd output of perf/memifbench for the testpmd baseline.
func BenchmarkGoToGo(b *testing.B) {
	for _, size := range []int{64, 1500} {
		b.Run(map[int]string{64: "64B", 1500: "1500B"}[size], func(b *testing.B) {
			srv, cli := pair(b, Config{Socket: sockPath(b), Logger: quietLog}, Config{Logger: quietLog})
			pkts := make([][]byte, 32)
			for i := range pkts {
				pkts[i] = make([]byte, size)
			}
			bufs := make([][]byte, 64)
			for i := range bufs {
				bufs[i] = make([]byte, 2048)
			}
			var stop atomic.Bool
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				runtime.LockOSThread()
				for !stop.Load() {
					srv.TxBurst(0, pkts)
				}
			}()
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			for got := 0; got < b.N; {
				n, _ := cli.RxBurst(0, bufs)
				for i := 0; i < n; i++ {
					bufs[i] = bufs[i][:cap(bufs[i])]
				}
				got += n
			}
			b.StopTimer()
			stop.Store(true)
			wg.Wait()
		})
	}
}

// BenchmarkBurstCost measures the CPU cost of our own code per frame, with
// no second core involved: one goroutine transmits a burst of 32 and
// receives it on the other side, in both directions (client->server and
// server->client). ns/op is per frame, for one transmit plus one receive.
func BenchmarkBurstCost(b *testing.B) {
	for _, size := range []int{64, 1500} {
		for _, dir := range []string{"c2s", "s2c"} {
			b.Run(fmt.Sprintf("%s-%dB", dir, size), func(b *testing.B) {
				srv, cli := pair(b, Config{Socket: sockPath(b), Logger: quietLog}, Config{Logger: quietLog})
				tx, rx := cli, srv
				if dir == "s2c" {
					tx, rx = srv, cli
				}
				pkts := make([][]byte, 32)
				for i := range pkts {
					pkts[i] = make([]byte, size)
				}
				bufs := make([][]byte, 32)
				for i := range bufs {
					bufs[i] = make([]byte, 2048)
				}
				b.SetBytes(int64(size))
				b.ReportAllocs()
				b.ResetTimer()
				for done := 0; done < b.N; done += 32 {
					n, _ := tx.TxBurst(0, pkts)
					m, _ := rx.RxBurst(0, bufs)
					if n != 32 || m != 32 {
						b.Fatalf("sent %d received %d", n, m)
					}
					for i := range bufs {
						bufs[i] = bufs[i][:cap(bufs[i])]
					}
				}
			})
		}
	}
}
