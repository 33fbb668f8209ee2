// Put throughput and latency over etcd's gRPC API with Go's clientv3, the client the original
// Hermes controller uses: the same program against etcd and Hermes (bench/store.sh builds it
// from Debian's golang-etcd-server-dev, GOPATH mode, and runs it beside
// tests/benches/grpc_put.rs, which does the same with the etcd-client crate).
//
//	grpc_put_go <host:port> <seconds> <in-flight> <clients> [one-key]
//
// `in-flight` puts are kept outstanding at all times, spread over `clients` clients (each one
// gRPC connection); every put writes a new key with a 64-byte value, or with `one-key` the same
// key each time. Prints one line: `puts/s p50 p99 errors` (latencies in ms), as the Rust
// client does.
package main

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/clientv3"
)

func arg(i int, def int) int {
	if len(os.Args) <= i {
		return def
	}
	n, err := strconv.Atoi(os.Args[i])
	if err != nil {
		fmt.Fprintf(os.Stderr, "argument %d: %v\n", i, err)
		os.Exit(2)
	}
	return n
}

func main() {
	endpoint := "127.0.0.1:2379"
	if len(os.Args) > 1 {
		endpoint = os.Args[1]
	}
	duration := time.Duration(arg(2, 15)) * time.Second
	inFlight := arg(3, 16)
	clients := arg(4, 2)
	oneKey := false
	if len(os.Args) > 5 {
		if os.Args[5] != "one-key" {
			fmt.Fprintf(os.Stderr, "unknown argument %q: expected one-key\n", os.Args[5])
			os.Exit(2)
		}
		oneKey = true
	}

	conns := make([]*clientv3.Client, clients)
	for i := range conns {
		c, err := clientv3.New(clientv3.Config{
			Endpoints:   []string{endpoint},
			DialTimeout: 5 * time.Second,
		})
		if err != nil {
			fmt.Fprintln(os.Stderr, "connect:", err)
			os.Exit(1)
		}
		conns[i] = c
	}
	value := strings.Repeat("v", 64)
	var stop atomic.Bool
	var errors atomic.Uint64
	latencies := make([][]time.Duration, inFlight)
	var wg sync.WaitGroup
	for w := 0; w < inFlight; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			kv := conns[w%clients].KV
			for i := 0; !stop.Load(); i++ {
				key := "/bench/one"
				if !oneKey {
					key = fmt.Sprintf("/bench/%d/%d", w, i)
				}
				started := time.Now()
				// A put that hangs counts as an error instead of stalling the run.
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_, err := kv.Put(ctx, key, value)
				cancel()
				if err != nil {
					errors.Add(1)
					continue
				}
				latencies[w] = append(latencies[w], time.Since(started))
			}
		}(w)
	}
	started := time.Now()
	time.Sleep(duration)
	stop.Store(true)
	wg.Wait()
	elapsed := time.Since(started).Seconds()
	var all []time.Duration
	for _, l := range latencies {
		all = append(all, l...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	pct := func(p float64) float64 {
		if len(all) == 0 {
			return 0
		}
		i := int(float64(len(all)-1)*p + 0.5)
		return all[i].Seconds() * 1000
	}
	fmt.Printf("%.0f %.2fms %.2fms %d\n", float64(len(all))/elapsed, pct(0.50), pct(0.99), errors.Load())
}
