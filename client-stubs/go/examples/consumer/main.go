// Command consumer reads a topic as a member of a consumer group through
// kafkad, printing each message and committing after each batch.
//
//	go run ./examples/consumer -topic T -group G -n 100
//
// The daemon's socket is $KAFKAD_SOCKET, /run/kafkad/kafkad.sock, or -socket.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"time"

	kafkad "github.com/kafkad/kafkad/client-stubs/go"
	"github.com/kafkad/kafkad/client-stubs/go/examples/internal/cli"
)

func main() {
	f := cli.Define("topic to consume (required)")
	group := flag.String("group", "kafkad-example", "consumer group")
	n := flag.Int("n", 0, "stop after this many messages (0: run until interrupted)")
	latest := flag.Bool("latest", false, "without a committed offset start at the end (default: the beginning)")
	idle := flag.Duration("idle", 0, "stop when no message came for this long (0: never)")
	quiet := flag.Bool("quiet", false, "do not print each message")
	f.Parse()

	ctx, stop, client := f.Connect()
	defer stop()
	defer client.Close()

	reset := kafkad.OffsetEarliest
	if *latest {
		reset = kafkad.OffsetLatest
	}
	consumer, err := client.OpenConsumer(ctx, kafkad.ConsumerConfig{
		Mode:            kafkad.ModeGroup,
		Topics:          []string{f.Topic},
		Group:           *group,
		AutoOffsetReset: reset,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer consumer.Close(context.Background())

	count := 0
	lastMessage := time.Now()
	for *n == 0 || count < *n {
		batch, err := consumer.Consume(ctx, 500, time.Second)
		if err != nil {
			if ctx.Err() != nil {
				break // interrupted
			}
			log.Fatalf("consume: %v", err)
		}
		for _, e := range batch.Events {
			log.Printf("%s %s[%d]", e.Type, e.Topic, e.Partition)
		}
		for _, m := range batch.Messages {
			if !*quiet {
				fmt.Printf("%s[%d]@%d key=%q value=%q\n", m.Topic, m.Partition, m.Offset, m.Key, m.Value)
			}
		}
		count += len(batch.Messages)
		if len(batch.Messages) > 0 {
			lastMessage = time.Now()
			// commit what this connection received (at-least-once)
			if _, err := consumer.Commit(ctx); err != nil {
				log.Fatalf("commit: %v", err)
			}
		} else if *idle > 0 && time.Since(lastMessage) > *idle {
			break
		}
	}
	fmt.Printf("consumed %d messages from %s as group %s\n", count, f.Topic, *group)
}
