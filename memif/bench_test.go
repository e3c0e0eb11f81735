package memif

import (
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
