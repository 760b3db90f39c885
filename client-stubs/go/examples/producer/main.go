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
	"os/signal"
	"time"

	kafkad "github.com/kafkad/kafkad/client-stubs/go"
)

func main() {
	topic := flag.String("topic", "", "topic to produce to (required)")
	n := flag.Int("n", 100, "number of messages")
	socket := flag.String("socket", "", "kafkad socket (default $KAFKAD_SOCKET or "+kafkad.DefaultSocket+")")
	cluster := flag.String("cluster", "", "cluster name (default: the daemon's default cluster)")
	key := flag.String("key", "", "message key (default: none)")
	timeout := flag.Duration("timeout", time.Minute, "how long to wait for the delivery reports")
	flag.Parse()
	if *topic == "" {
		flag.Usage()
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	opts := []kafkad.Option{}
	if *socket != "" {
		opts = append(opts, kafkad.WithSocket(*socket))
	}
	if *cluster != "" {
		opts = append(opts, kafkad.WithCluster(*cluster))
	}
	client, err := kafkad.Dial(ctx, opts...)
	if err != nil {
		log.Fatal(err)
	}
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
		if _, err := client.Produce(ctx, *topic, msg); err != nil {
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
		*n, *topic, t.ok, t.failed, time.Since(start).Round(time.Millisecond))
	if t.failed > 0 {
		os.Exit(1)
	}
}
