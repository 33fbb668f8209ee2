// Idle watchers for a put benchmark to run beside: opens <streams> watch streams of
// <per-stream> watchers each with Go's clientv3, every watcher on its own key that is never
// written, prints "watching N" once the server has created every one (exits 1 if it refuses
// one), and holds them until killed. Built as
// bench/grpc_put_go is (GOPATH mode, Debian's golang-etcd-server-dev):
//
//	idle_watchers_go <host:port> <streams> <per-stream>
package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	"go.etcd.io/etcd/clientv3"
	"google.golang.org/grpc/metadata"
)

func arg(i int) int {
	n, err := strconv.Atoi(os.Args[i])
	if err != nil || n < 0 {
		fmt.Fprintf(os.Stderr, "argument %d: expected a count\n", i)
		os.Exit(2)
	}
	return n
}

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: idle_watchers_go <host:port> <streams> <per-stream>")
		os.Exit(2)
	}
	streams, per := arg(2), arg(3)
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{os.Args[1]}, DialTimeout: 5 * time.Second})
	if err != nil {
		fmt.Fprintln(os.Stderr, "connect:", err)
		os.Exit(1)
	}
	n := 0
	var created sync.WaitGroup
	for s := 0; s < streams; s++ {
		// clientv3 shares one stream among watches whose contexts carry the same outgoing
		// gRPC metadata, so each stream gets its own.
		ctx := metadata.AppendToOutgoingContext(context.Background(), "hermes-bench-stream", strconv.Itoa(s))
		for i := 0; i < per; i++ {
			key := fmt.Sprintf("/idle/%d/%d", s, i)
			ch := c.Watch(ctx, key, clientv3.WithCreatedNotify())
			created.Add(1)
			go func() {
				first := true
				for resp := range ch {
					if resp.Canceled {
						fmt.Fprintf(os.Stderr, "watch %s refused: %v\n", key, resp.Err())
						os.Exit(1)
					}
					if first {
						first = false
						created.Done()
					}
				}
			}()
			n++
		}
	}
	created.Wait()
	fmt.Println("watching", n)
	select {}
}
