package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	kafkad "github.com/kafkad/kafkad/client-stubs/go"
	"github.com/twmb/franz-go/pkg/kgo"
)

// settings describes what each contender is configured with (also in the JSON).
func settings(o *options) map[string]string {
	return map[string]string{
		"kafkad": fmt.Sprintf("stub defaults: WithLinger(%s) local batches of up to 10000 messages / 1 MiB, "+
			"WithDeliveryCallback (counts reports), Flush; the daemon's librdkafka producer: its config "+
			"(kafkad defaults linger.ms=5, queue.buffering.max.messages=1000000; librdkafka defaults acks=all, "+
			"no compression, batch.num.messages=10000, batch.size=1000000). Consume: OpenConsumer(simple, earliest, "+
			"no group) + Consume(max=%d, 1s) (the daemon caps a result at 1 MiB, ~7500 such messages)", o.linger, o.batch),
		"confluent": fmt.Sprintf("producer: acks=all, linger.ms=%d, compression.type=none, queue.buffering.max.messages=1000000, "+
			"queue.buffering.max.kbytes=1048576, go.delivery.report.fields=none (reports without key/value copies, "+
			"like the stub's), reports from Events(); otherwise librdkafka defaults. Consumer: group.id set but "+
			"Assign() (no join), enable.auto.commit=false, OffsetBeginning, Poll(100) loop (the Go API has no batch "+
			"consume), librdkafka defaults otherwise", o.linger.Milliseconds()),
		"confluent-tuned": "as confluent, and the consumer with fetch.queue.backoff.ms=10 (librdkafka's default 1000 " +
			"idles the fetcher for a second whenever queued.min.messages=100000 are buffered)",
		"franz": fmt.Sprintf("producer: ProducerLinger(%s), ProducerBatchCompression(None) (default would be snappy), "+
			"MaxBufferedRecords(1000000) (default 50000), acks=all, idempotent (franz-go's default; 5 requests in "+
			"flight), promise per record, Flush. Consumer: ConsumeTopics + ConsumeResetOffset(AtStart), no group, "+
			"PollFetches loop, defaults otherwise", o.linger),
	}
}

// finish ends the measured part of the phase (before clients are closed).
func (m *measurer) finish() {
	if !m.done {
		m.last = m.end()
		m.done = true
	}
}

// ---------------------------------------------------------------- kafkad

type kafkadContender struct {
	o     *options
	hello kafkad.HelloInfo
}

func (k *kafkadContender) info() map[string]string {
	return map[string]string{
		"server":      k.hello.Server,
		"max_batch":   strconv.Itoa(k.hello.MaxBatch),
		"max_pending": strconv.Itoa(k.hello.MaxPending),
		"max_frame":   strconv.Itoa(k.hello.MaxFrame),
	}
}

func (k *kafkadContender) produce(ctx context.Context, m *measurer, topic string, payload []byte, n int) (int, error, error) {
	var (
		count, errs int
		firstErr    error
		done        = make(chan struct{})
	)
	cb := func(r kafkad.DeliveryReport) { // one goroutine of the client calls it
		count++
		if r.Err != nil {
			errs++
			if firstErr == nil {
				firstErr = r.Err
			}
		}
		if count == n {
			close(done)
		}
	}
	c, err := kafkad.Dial(ctx, kafkad.WithSocket(k.o.socket), kafkad.WithClientName("kafkad-bench"),
		kafkad.WithDeliveryCallback(cb), kafkad.WithLinger(k.o.linger))
	if err != nil {
		return 0, nil, err
	}
	defer c.Close()
	k.hello = c.Hello()
	// warm-up: the daemon learns the topic, the connection is in use
	if _, err := c.ProduceSync(ctx, topic, kafkad.Message{Value: payload}); err != nil {
		return 0, nil, fmt.Errorf("warm-up message: %w", err)
	}
	m.mark()
	for i := 0; i < n; i++ {
		if _, err := c.Produce(ctx, topic, kafkad.Message{Value: payload}); err != nil {
			return 0, nil, fmt.Errorf("message %d: %w", i, err)
		}
	}
	if rem, err := c.Flush(ctx); err != nil || rem != 0 {
		return 0, nil, fmt.Errorf("flush: %d remaining, %v", rem, err)
	}
	select {
	case <-done:
	case <-ctx.Done():
		return 0, nil, fmt.Errorf("reports: %w", ctx.Err())
	}
	m.finish()
	return errs, firstErr, nil
}

func (k *kafkadContender) consume(ctx context.Context, m *measurer, topic string, want int) error {
	c, err := kafkad.Dial(ctx, kafkad.WithSocket(k.o.socket), kafkad.WithClientName("kafkad-bench"))
	if err != nil {
		return err
	}
	defer c.Close()
	co, err := c.OpenConsumer(ctx, kafkad.ConsumerConfig{
		Mode: kafkad.ModeSimple, Topics: []string{topic}, AutoOffsetReset: kafkad.OffsetEarliest,
	})
	if err != nil {
		return err
	}
	for m.n < want {
		b, err := co.Consume(ctx, min(k.o.batch, want-m.n), time.Second)
		if err != nil {
			return err
		}
		for i := range b.Messages {
			msg := &b.Messages[i]
			m.got(msg.Partition, msg.Offset, msg.Value)
		}
	}
	m.finish()
	cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return co.Close(cctx)
}

// ---------------------------------------------------------------- confluent-kafka-go

type confluentContender struct {
	o     *options
	tuned bool // consumer: fetch.queue.backoff.ms=10
}

func (k *confluentContender) info() map[string]string {
	_, v := kafka.LibraryVersion()
	return map[string]string{"librdkafka": v, "link": kafka.LibrdkafkaLinkInfo}
}

func (k *confluentContender) produce(ctx context.Context, m *measurer, topic string, payload []byte, n int) (int, error, error) {
	p, err := kafka.NewProducer(&kafka.ConfigMap{
		"bootstrap.servers":            k.o.bootstrap,
		"acks":                         "all",
		"linger.ms":                    int(k.o.linger.Milliseconds()),
		"compression.type":             "none",
		"queue.buffering.max.messages": 1000000,
		"queue.buffering.max.kbytes":   1048576,
		"go.delivery.report.fields":    "none",
	})
	if err != nil {
		return 0, nil, err
	}
	defer p.Close()
	tp := kafka.TopicPartition{Topic: &topic, Partition: kafka.PartitionAny}
	// warm-up message, its report on a channel of its own
	dch := make(chan kafka.Event, 1)
	if err := p.Produce(&kafka.Message{TopicPartition: tp, Value: payload}, dch); err != nil {
		return 0, nil, err
	}
	select {
	case ev := <-dch:
		if msg, ok := ev.(*kafka.Message); !ok || msg.TopicPartition.Error != nil {
			return 0, nil, fmt.Errorf("warm-up message: %v", ev)
		}
	case <-ctx.Done():
		return 0, nil, fmt.Errorf("warm-up message: %w", ctx.Err())
	}

	var (
		errs     int
		firstErr error
		done     = make(chan struct{})
	)
	go func() {
		count := 0
		for ev := range p.Events() {
			switch e := ev.(type) {
			case *kafka.Message:
				count++
				if e.TopicPartition.Error != nil {
					errs++
					if firstErr == nil {
						firstErr = e.TopicPartition.Error
					}
				}
				if count == n {
					close(done)
				}
			case kafka.Error:
				logf("confluent: %v", e)
			}
		}
	}()
	m.mark()
	for i := 0; i < n; i++ {
		msg := &kafka.Message{TopicPartition: tp, Value: payload}
		for {
			err := p.Produce(msg, nil)
			if err == nil {
				break
			}
			var ke kafka.Error
			if errors.As(err, &ke) && ke.Code() == kafka.ErrQueueFull {
				time.Sleep(time.Millisecond)
				continue
			}
			return 0, nil, fmt.Errorf("message %d: %w", i, err)
		}
	}
	// Flush() would poll the queue length every 100 ms; the n-th report is
	// the same condition, seen at once
	select {
	case <-done:
	case <-ctx.Done():
		return 0, nil, fmt.Errorf("reports: %w", ctx.Err())
	}
	m.finish()
	return errs, firstErr, nil
}

func (k *confluentContender) consume(ctx context.Context, m *measurer, topic string, want int) error {
	cfg := kafka.ConfigMap{
		"bootstrap.servers":  k.o.bootstrap,
		"group.id":           "gobench-" + topic,
		"enable.auto.commit": false,
		"auto.offset.reset":  "earliest",
	}
	if k.tuned {
		// librdkafka stops fetching a partition for fetch.queue.backoff.ms
		// (default 1000, configurable since 2.2) once queued.min.messages
		// (100000) are buffered: a fast consumer then idles up to a second
		cfg["fetch.queue.backoff.ms"] = 10
	}
	c, err := kafka.NewConsumer(&cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	tps := make([]kafka.TopicPartition, k.o.partitions)
	for i := range tps {
		tps[i] = kafka.TopicPartition{Topic: &topic, Partition: int32(i), Offset: kafka.OffsetBeginning}
	}
	if err := c.Assign(tps); err != nil {
		return err
	}
	for m.n < want {
		if err := ctx.Err(); err != nil {
			return err
		}
		switch e := c.Poll(100).(type) {
		case *kafka.Message:
			if e.TopicPartition.Error != nil {
				return e.TopicPartition.Error
			}
			m.got(e.TopicPartition.Partition, int64(e.TopicPartition.Offset), e.Value)
		case kafka.Error:
			if e.IsFatal() {
				return e
			}
			logf("confluent consumer: %v", e)
		}
	}
	m.finish()
	return nil
}

// ---------------------------------------------------------------- franz-go

type franzContender struct {
	o *options
}

func (k *franzContender) info() map[string]string { return nil }

func (k *franzContender) produce(ctx context.Context, m *measurer, topic string, payload []byte, n int) (int, error, error) {
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(k.o.bootstrap),
		kgo.DefaultProduceTopic(topic),
		kgo.ProducerLinger(k.o.linger),
		kgo.ProducerBatchCompression(kgo.NoCompression()),
		kgo.MaxBufferedRecords(1000000),
		kgo.RequiredAcks(kgo.AllISRAcks()),
	)
	if err != nil {
		return 0, nil, err
	}
	defer cl.Close()
	if err := cl.ProduceSync(ctx, &kgo.Record{Value: payload}).FirstErr(); err != nil {
		return 0, nil, fmt.Errorf("warm-up message: %w", err)
	}
	var (
		count, errs atomic.Int64
		mu          sync.Mutex
		firstErr    error
		done        = make(chan struct{})
	)
	promise := func(_ *kgo.Record, err error) {
		if err != nil {
			errs.Add(1)
			mu.Lock()
			if firstErr == nil {
				firstErr = err
			}
			mu.Unlock()
		}
		if count.Add(1) == int64(n) {
			close(done)
		}
	}
	m.mark()
	for i := 0; i < n; i++ {
		cl.Produce(ctx, &kgo.Record{Value: payload}, promise)
	}
	if err := cl.Flush(ctx); err != nil {
		return 0, nil, fmt.Errorf("flush: %w", err)
	}
	select {
	case <-done:
	case <-ctx.Done():
		return 0, nil, fmt.Errorf("reports: %w", ctx.Err())
	}
	m.finish()
	mu.Lock()
	defer mu.Unlock()
	return int(errs.Load()), firstErr, nil
}

func (k *franzContender) consume(ctx context.Context, m *measurer, topic string, want int) error {
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(k.o.bootstrap),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)
	if err != nil {
		return err
	}
	defer cl.Close()
	for m.n < want {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return err
		}
		for _, fe := range fs.Errors() {
			logf("franz fetch error %s/%d: %v", fe.Topic, fe.Partition, fe.Err)
		}
		fs.EachRecord(func(r *kgo.Record) { m.got(r.Partition, r.Offset, r.Value) })
	}
	m.finish()
	return nil
}
