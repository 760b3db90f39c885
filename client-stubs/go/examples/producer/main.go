// Command producer sends messages to a topic through kafkad and waits for
// their delivery reports.
//
//	go run ./examples/producer -topic T -n 100
//
// The daemon's socket is $KAFKAD_SOCKET, /run/kafkad/kafkad.sock, or -socket.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"time"

	kafkad "github.com/kafkad/kafkad/client-stubs/go"
	"github.com/kafkad/kafkad/client-stubs/go/examples/internal/cli"
)

func main() {
	f := cli.Define("topic to produce to (required)")
	n := flag.Int("n", 100, "number of messages")
	cluster := flag.String("cluster", "", "cluster name (default: the daemon's default cluster)")
	key := flag.String("key", "", "message key (default: none)")
	timeout := flag.Duration("timeout", time.Minute, "how long to wait for the delivery reports")
	f.Parse()

	opts := []kafkad.Option{}
	if *cluster != "" {
		opts = append(opts, kafkad.WithCluster(*cluster))
	}
	ctx, stop, client := f.Connect(opts...)
	defer stop()
	defer client.Close()

	// Count the delivery reports while producing.
	type tally struct{ ok, failed int }
	done := make(chan tally, 1)
	go func() {
		var t tally
		for r := range client.Reports() {
			if r.Err != nil {
				t.failed++
				log.Printf("message %d failed: %v", r.Seq, r.Err)
			} else {
				t.ok++
			}
			if t.ok+t.failed == *n {
				break
			}
		}
		done <- t
	}()

	start := time.Now()
	for i := 0; i < *n; i++ {
		msg := kafkad.Message{Value: []byte(fmt.Sprintf("message %d at %s", i, time.Now().Format(time.RFC3339Nano)))}
		if *key != "" {
			msg.Key = []byte(*key)
		}
		if _, err := client.Produce(ctx, f.Topic, msg); err != nil {
			log.Fatalf("produce: %v", err)
		}
	}
	wctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	if remaining, err := client.Flush(wctx); err != nil {
		log.Fatalf("flush: %d messages without an outcome: %v", remaining, err)
	}
	var t tally
	if *n > 0 {
		select {
		case t = <-done:
		case <-wctx.Done():
			log.Fatalf("reports did not arrive: %v", wctx.Err())
		}
	}
	fmt.Printf("produced %d messages to %s: %d delivered, %d failed (%v)\n",
		*n, f.Topic, t.ok, t.failed, time.Since(start).Round(time.Millisecond))
	if t.failed > 0 {
		os.Exit(1)
	}
}
