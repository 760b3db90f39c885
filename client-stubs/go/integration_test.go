package kafkad

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestHelloPingMetadataStats(t *testing.T) {
	t.Parallel()
	topic := createTopic(t, "meta")
	c := dial(t)
	ctx := testCtx(t)
	h := c.Hello()
	if h.Version != 1 || h.MaxFrame <= 0 || h.MaxBatch <= 0 || h.MaxPending <= 0 || h.DefaultCluster != "main" ||
		len(h.Clusters) != 1 || h.Clusters[0] != "main" || !strings.HasPrefix(h.Server, "kafkad") {
		t.Fatalf("hello: %+v", h)
	}
	if _, err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	missing := uniq("go-missing")
	md, err := c.Metadata(ctx, topic, missing)
	if err != nil {
		t.Fatal(err)
	}
	if md.Cluster != "main" || len(md.Brokers) == 0 || len(md.Topics) != 2 {
		t.Fatalf("metadata: %+v", md)
	}
	for _, tm := range md.Topics {
		switch tm.Name {
		case topic:
			if tm.Err != nil || len(tm.Partitions) != 4 {
				t.Errorf("topic %s: %+v", topic, tm)
			}
			for i, p := range tm.Partitions {
				if p.ID != int32(i) || p.Leader < 0 || len(p.Replicas) == 0 || p.Err != nil {
					t.Errorf("partition %+v", p)
				}
			}
		case missing:
			if !errors.Is(tm.Err, ErrKafkaUnknownTopic) {
				t.Errorf("missing topic error: %v", tm.Err)
			}
		default:
			t.Errorf("unexpected topic %q", tm.Name)
		}
	}
	all, err := c.Metadata(ctx)
	if err != nil || len(all.Topics) == 0 {
		t.Fatalf("all topics: %v %v", all, err)
	}
	st, err := c.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := st.Daemon["produced"]; !ok || st.Daemon["connections"] < 1 || st.Clusters["main"].Bootstrap != env.bootstrap {
		t.Fatalf("stats: %+v", st)
	}
	low, high, err := c.Watermarks(ctx, topic, 0)
	if err != nil || low != 0 || high != 0 {
		t.Fatalf("watermarks of a new topic: %d %d %v", low, high, err)
	}
	v, err := c.Call(ctx, "ping", nil)
	if err != nil || len(v.(map[string]any)) != 0 {
		t.Fatalf("raw ping: %#v %v", v, err)
	}
}

func TestProduceSync(t *testing.T) {
	t.Parallel()
	topic := createTopic(t, "sync")
	c := dial(t)
	ctx := testCtx(t)
	seen := map[int32]bool{}
	for i := 0; i < 20; i++ {
		md, err := c.ProduceSync(ctx, topic, Message{Key: []byte(fmt.Sprint("k", i)), Value: []byte(fmt.Sprint("v", i))})
		if err != nil {
			t.Fatal(err)
		}
		if md.Topic != topic || md.Partition < 0 || md.Partition > 3 || md.Offset < 0 {
			t.Fatalf("metadata %+v", md)
		}
		seen[md.Partition] = true
	}
	last := int64(-1)
	for i := 0; i < 5; i++ {
		md, err := c.ProduceSync(ctx, topic, Message{Value: []byte("p3"), Partition: Int32(3)})
		if err != nil {
			t.Fatal(err)
		}
		if md.Partition != 3 || md.Offset <= last {
			t.Fatalf("explicit partition: %+v after offset %d", md, last)
		}
		last = md.Offset
	}
	_, high, err := c.Watermarks(ctx, topic, 3)
	if err != nil || high != last+1 {
		t.Fatalf("high watermark %d, last offset %d (%v)", high, last, err)
	}
}

// checkReports verifies that seqs first..first+n-1 were each reported once,
// successfully, and that per partition the offsets follow the seqs (one
// producer goroutine keeps its order).
func checkReports(t *testing.T, reps []DeliveryReport, topic string, first uint64, n int) {
	t.Helper()
	if len(reps) != n {
		t.Fatalf("%d reports, want %d", len(reps), n)
	}
	bySeq := map[uint64]DeliveryReport{}
	for _, r := range reps {
		if _, dup := bySeq[r.Seq]; dup {
			t.Fatalf("seq %d reported twice", r.Seq)
		}
		bySeq[r.Seq] = r
		if r.Err != nil || r.Topic != topic || r.Offset < 0 || r.Partition < 0 {
			t.Fatalf("report %+v", r)
		}
	}
	lastOff := map[int32]int64{}
	used := map[[2]int64]bool{}
	for s := first; s < first+uint64(n); s++ {
		r, ok := bySeq[s]
		if !ok {
			t.Fatalf("seq %d not reported", s)
		}
		if prev, ok := lastOff[r.Partition]; ok && r.Offset <= prev {
			t.Fatalf("partition %d: seq %d at offset %d after offset %d", r.Partition, s, r.Offset, prev)
		}
		lastOff[r.Partition] = r.Offset
		k := [2]int64{int64(r.Partition), r.Offset}
		if used[k] {
			t.Fatalf("two messages at partition %d offset %d", r.Partition, r.Offset)
		}
		used[k] = true
	}
}

func sumHigh(t *testing.T, c *Client, topic string) int64 {
	t.Helper()
	var total int64
	for p := int32(0); p < 4; p++ {
		low, high, err := c.Watermarks(testCtx(t), topic, p)
		if err != nil {
			t.Fatal(err)
		}
		total += high - low
	}
	return total
}

func TestProduceAsync20k(t *testing.T) {
	t.Parallel()
	const n = 20000
	topic := createTopic(t, "async")
	c := dial(t)
	ctx := testCtx(t)
	got := make(chan []DeliveryReport, 1)
	go func() {
		var reps []DeliveryReport
		for r := range c.Reports() {
			reps = append(reps, r)
			if len(reps) == n {
				break
			}
		}
		got <- reps
	}()
	for i := 0; i < n; i++ {
		seq, err := c.Produce(ctx, topic, Message{Value: []byte(fmt.Sprintf("m-%d", i))})
		if err != nil {
			t.Fatal(err)
		}
		if seq != uint64(i+1) {
			t.Fatalf("message %d got seq %d", i, seq)
		}
	}
	remaining, err := c.Flush(ctx)
	if err != nil || remaining != 0 {
		t.Fatalf("Flush: %d %v", remaining, err)
	}
	var reps []DeliveryReport
	select {
	case reps = <-got:
	case <-ctx.Done():
		t.Fatalf("reports did not arrive (%d in flight)", c.InFlight())
	}
	checkReports(t, reps, topic, 1, n)
	// nothing more comes
	select {
	case r := <-c.Reports():
		t.Fatalf("extra report %+v", r)
	case <-time.After(200 * time.Millisecond):
	}
	if c.InFlight() != 0 {
		t.Fatalf("in flight: %d", c.InFlight())
	}
	if total := sumHigh(t, c, topic); total != n {
		t.Fatalf("topic holds %d messages, want %d", total, n)
	}
}

func TestProduceConcurrent50(t *testing.T) {
	t.Parallel()
	const goroutines, each = 50, 300
	topic := createTopic(t, "conc")
	var mu sync.Mutex
	var reps []DeliveryReport
	c := dial(t, WithDeliveryCallback(func(r DeliveryReport) {
		mu.Lock()
		reps = append(reps, r)
		mu.Unlock()
	}))
	ctx := testCtx(t)
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	seqs := make([][]uint64, goroutines)
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				key := []byte(fmt.Sprintf("g%d", g))
				seq, err := c.Produce(ctx, topic, Message{Key: key, Value: []byte(fmt.Sprintf("g%d-%d", g, i))})
				if err != nil {
					errs <- err
					return
				}
				seqs[g] = append(seqs[g], seq)
				if i%100 == 50 {
					md, err := c.ProduceSync(ctx, topic, Message{Key: key, Value: []byte("sync")})
					if err != nil || md.Offset < 0 {
						errs <- fmt.Errorf("sync: %v %+v", err, md)
						return
					}
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if rem, err := c.Flush(ctx); err != nil || rem != 0 {
		t.Fatalf("Flush: %d %v", rem, err)
	}
	// Flush has every report in the client; the callback runs soon after
	for c.InFlight() > 0 && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	checkReports(t, reps, topic, 1, goroutines*each)
	// one key per goroutine: its messages share a partition, in order
	bySeq := map[uint64]DeliveryReport{}
	for _, r := range reps {
		bySeq[r.Seq] = r
	}
	for g := range seqs {
		var prev DeliveryReport
		for i, s := range seqs[g] {
			r := bySeq[s]
			if i > 0 && (r.Partition != prev.Partition || r.Offset <= prev.Offset) {
				t.Fatalf("goroutine %d: seq %d at %d/%d after %d/%d", g, s, r.Partition, r.Offset, prev.Partition, prev.Offset)
			}
			prev = r
		}
	}
	if total := sumHigh(t, c, topic); total != goroutines*each+goroutines*(each/100) {
		t.Fatalf("topic holds %d messages", total)
	}
}

func TestProduceBatchPolled(t *testing.T) {
	t.Parallel()
	topic := createTopic(t, "batch")
	c := dial(t, WithPolledReports(), WithBatchSize(700))
	ctx := testCtx(t)
	if c.Reports() != nil {
		t.Fatal("polled client has a reports channel")
	}
	// a lone Produce first, so the batch's numbers do not start at 1
	if seq, err := c.Produce(ctx, topic, Message{Value: []byte("first")}); err != nil || seq != 1 {
		t.Fatalf("Produce: %d %v", seq, err)
	}
	msgs := make([]Message, 5000)
	for i := range msgs {
		msgs[i] = Message{Key: []byte(fmt.Sprint(i % 10)), Value: []byte(fmt.Sprint(i))}
	}
	first, err := c.ProduceBatch(ctx, topic, msgs)
	if err != nil || first != 2 {
		t.Fatalf("ProduceBatch: %d %v", first, err)
	}
	if rem, err := c.Flush(ctx); err != nil || rem != 0 {
		t.Fatalf("Flush: %d %v", rem, err)
	}
	var reps []DeliveryReport
	for len(reps) < 5001 {
		r, err := c.PollReports(ctx, 1000, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if len(r) > 1000 {
			t.Fatalf("PollReports returned %d > max", len(r))
		}
		if len(r) == 0 {
			t.Fatalf("no report after Flush (%d so far)", len(reps))
		}
		reps = append(reps, r...)
	}
	checkReports(t, reps, topic, 1, 5001)
	if r, err := c.PollReports(ctx, 0, 0); err != nil || len(r) != 0 {
		t.Fatalf("extra reports %v %v", r, err)
	}
}

func TestErrorMapping(t *testing.T) {
	t.Parallel()
	topic := createTopic(t, "err")
	ctx := testCtx(t)

	// unknown cluster: sync, metadata, and async (as the batch's reports)
	bad := dial(t, WithCluster("nope"), WithPolledReports())
	if _, err := bad.ProduceSync(ctx, topic, Message{Value: []byte("x")}); !errors.Is(err, ErrUnknownCluster) {
		t.Errorf("ProduceSync on unknown cluster: %v", err)
	}
	if _, err := bad.Metadata(ctx); !errors.Is(err, ErrUnknownCluster) {
		t.Errorf("Metadata on unknown cluster: %v", err)
	}
	seq, err := bad.Produce(ctx, topic, Message{Value: []byte("x")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bad.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	reps, err := bad.PollReports(ctx, 10, 10*time.Second)
	if err != nil || len(reps) != 1 || reps[0].Seq != seq || !errors.Is(reps[0].Err, ErrUnknownCluster) {
		t.Errorf("async on unknown cluster: %+v %v", reps, err)
	}
	var e *Error
	if len(reps) == 1 && (!errors.As(reps[0].Err, &e) || e.Name != "UNKNOWN_CLUSTER" || e.Message == "") {
		t.Errorf("error details: %#v", reps[0].Err)
	}

	c := dial(t, WithPolledReports())
	// invalid topic name
	if _, err := c.ProduceSync(ctx, "bad topic!", Message{Value: []byte("x")}); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("invalid topic name: %v", err)
	}
	// async with an invalid name, between good messages: only its batch fails
	s1, _ := c.Produce(ctx, topic, Message{Value: []byte("ok1")})
	s2, _ := c.Produce(ctx, "bad topic!", Message{Value: []byte("x")})
	s3, _ := c.Produce(ctx, topic, Message{Value: []byte("ok2")})
	if rem, err := c.Flush(ctx); err != nil || rem != 0 {
		t.Fatalf("Flush: %d %v", rem, err)
	}
	got := map[uint64]error{}
	for len(got) < 3 {
		reps, err := c.PollReports(ctx, 0, 10*time.Second)
		if err != nil || len(reps) == 0 {
			t.Fatalf("PollReports: %v %v", reps, err)
		}
		for _, r := range reps {
			got[r.Seq] = r.Err
		}
	}
	if got[s1] != nil || got[s3] != nil || !errors.Is(got[s2], ErrInvalidArgument) {
		t.Errorf("reports: %v", got)
	}

	// unknown op via a raw call; the connection stays usable
	if _, err := c.Call(ctx, "no_such_op", map[string]any{"x": 1}); !errors.Is(err, ErrUnknownOp) {
		t.Errorf("unknown op: %v", err)
	}
	if _, err := c.Call(ctx, "produce", map[string]any{"topic": topic, "ack": "sometimes"}); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("bad ack: %v", err)
	}
	if _, err := c.Call(ctx, "consume", map[string]any{"handle": 987654321}); !errors.Is(err, ErrUnknownHandle) {
		t.Errorf("unknown handle: %v", err)
	}
	if _, err := c.OpenConsumer(ctx, ConsumerConfig{Topics: []string{uniq("go-missing")}}); !errors.Is(err, ErrKafkaUnknownTopic) {
		t.Errorf("consumer on a missing topic: %v", err)
	}
	if _, err := c.OpenConsumer(ctx, ConsumerConfig{Mode: ModeZookeeper, Topics: []string{topic}, Group: "g"}); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("zookeeper mode without zookeeper_connect: %v", err)
	}
	if _, err := c.OpenConsumer(ctx, ConsumerConfig{Mode: ModeZookeeper, Topics: []string{topic}, Group: "g",
		ZookeeperConnect: "127.0.0.1:1", ZookeeperConnectionTimeout: 300 * time.Millisecond}); !errors.Is(err, ErrTimedOut) {
		t.Errorf("zookeeper mode with no ZooKeeper listening: %v", err)
	}
	if _, err := c.OpenConsumer(ctx, ConsumerConfig{Mode: ModeGroup, Topics: []string{topic}}); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("group mode without a group: %v", err)
	}
	// too large for a frame: refused by the client, nothing sent
	big := make([]byte, c.Hello().MaxFrame)
	if _, err := c.Produce(ctx, topic, Message{Value: big}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("huge message: %v", err)
	}
	if _, err := c.ProduceSync(ctx, topic, Message{Value: big}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("huge sync message: %v", err)
	}
	if _, err := c.Ping(ctx); err != nil {
		t.Errorf("connection unusable after errors: %v", err)
	}
}

// TestUnknownTopicDelivery: a valid name that does not exist (auto-create
// is off) fails as a Kafka error once librdkafka gives up on it.
func TestUnknownTopicDelivery(t *testing.T) {
	t.Parallel()
	c := dial(t)
	_, err := c.ProduceSync(testCtx(t), uniq("go-nosuch"), Message{Value: []byte("x")})
	var ke *KafkaError
	if !errors.Is(err, ErrKafkaUnknownTopic) || !errors.As(err, &ke) {
		t.Fatalf("produce to a missing topic: %v", err)
	}
}

// TestBadFrame: a zero-length frame gets the BAD_FRAME error frame and the
// connection is closed.
func TestBadFrame(t *testing.T) {
	needDaemon(t)
	conn, err := net.Dial("unix", env.socket)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := conn.Write([]byte{0, 0, 0, 0}); err != nil {
		t.Fatal(err)
	}
	var hdr [4]byte
	if _, err := io.ReadFull(conn, hdr[:]); err != nil {
		t.Fatal(err)
	}
	payload := make([]byte, binary.BigEndian.Uint32(hdr[:]))
	if _, err := io.ReadFull(conn, payload); err != nil {
		t.Fatal(err)
	}
	_, hasID, rerr, _, err := parseResponse(payload)
	if err != nil || hasID || !errors.Is(rerr, ErrBadFrame) {
		t.Fatalf("error frame: %v %v %v", hasID, rerr, err)
	}
	if n, err := conn.Read(hdr[:]); err != io.EOF {
		t.Fatalf("connection not closed: %d %v", n, err)
	}
}

// consumeN reads until n messages arrived (events are collected too).
func consumeN(t *testing.T, ctx context.Context, co *Consumer, n int) ([]ConsumerMessage, []ConsumerEvent) {
	t.Helper()
	var msgs []ConsumerMessage
	var evs []ConsumerEvent
	for len(msgs) < n {
		b, err := co.Consume(ctx, 1000, 2*time.Second)
		if err != nil {
			t.Fatalf("Consume after %d messages: %v", len(msgs), err)
		}
		msgs = append(msgs, b.Messages...)
		evs = append(evs, b.Events...)
	}
	return msgs, evs
}

func TestSimpleConsumerEarliest(t *testing.T) {
	t.Parallel()
	const n = 200
	topic := createTopic(t, "simple")
	c := dial(t, WithPolledReports())
	ctx := testCtx(t)
	ts0 := time.UnixMilli(1700000000000)
	msgs := make([]Message, n)
	for i := range msgs {
		msgs[i] = Message{
			Key:       []byte(fmt.Sprintf("k%03d", i)),
			Value:     []byte(fmt.Sprintf("value-%d", i)),
			Headers:   []Header{{"i", []byte(fmt.Sprint(i))}, {"nil", nil}},
			Timestamp: ts0.Add(time.Duration(i) * time.Millisecond),
		}
	}
	msgs[7].Value = nil      // tombstone
	msgs[8].Value = []byte{} // empty, not null
	msgs[9].Headers = nil
	if _, err := c.ProduceBatch(ctx, topic, msgs); err != nil {
		t.Fatal(err)
	}
	if rem, err := c.Flush(ctx); err != nil || rem != 0 {
		t.Fatalf("Flush: %d %v", rem, err)
	}
	co, err := c.OpenConsumer(ctx, ConsumerConfig{Mode: ModeSimple, Topics: []string{topic}, AutoOffsetReset: OffsetEarliest})
	if err != nil {
		t.Fatal(err)
	}
	if co.Attached() != 1 || co.Key() == "" {
		t.Errorf("consumer %+v", co)
	}
	got, evs := consumeN(t, ctx, co, n)
	if len(got) != n {
		t.Fatalf("consumed %d messages, want %d", len(got), n)
	}
	byKey := map[string]ConsumerMessage{}
	nextOff := map[int32]int64{}
	for _, m := range got {
		if m.Topic != topic {
			t.Fatalf("topic %q", m.Topic)
		}
		if m.Offset != nextOff[m.Partition] {
			t.Fatalf("partition %d: offset %d, want %d", m.Partition, m.Offset, nextOff[m.Partition])
		}
		nextOff[m.Partition]++
		byKey[string(m.Key)] = m
	}
	for i, want := range msgs {
		m, ok := byKey[string(want.Key)]
		if !ok {
			t.Fatalf("message %d not consumed", i)
		}
		if !bytes.Equal(m.Value, want.Value) || (m.Value == nil) != (want.Value == nil) {
			t.Errorf("message %d: value %q (nil %v), want %q", i, m.Value, m.Value == nil, want.Value)
		}
		if !m.Timestamp.Equal(want.Timestamp) {
			t.Errorf("message %d: timestamp %v, want %v", i, m.Timestamp, want.Timestamp)
		}
		if len(m.Headers) != len(want.Headers) {
			t.Fatalf("message %d: headers %v, want %v", i, m.Headers, want.Headers)
		}
		for j, h := range want.Headers {
			if m.Headers[j].Key != h.Key || !bytes.Equal(m.Headers[j].Value, h.Value) || (m.Headers[j].Value == nil) != (h.Value == nil) {
				t.Errorf("message %d header %d: %+v, want %+v", i, j, m.Headers[j], h)
			}
		}
	}
	assigned := map[int32]bool{}
	for _, e := range evs {
		if e.Type == EventAssigned && e.Topic == topic {
			assigned[e.Partition] = true
		}
	}
	if len(assigned) != 4 {
		t.Errorf("assigned events for %d partitions: %+v", len(assigned), evs)
	}
	// a simple consumer without a group cannot commit
	if _, err := co.Commit(ctx); !errors.Is(err, ErrInvalidState) {
		t.Errorf("commit without a group: %v", err)
	}
	// seek back to the start of partition 0 and read it again
	p0 := nextOff[0]
	if p0 > 0 {
		if err := co.Seek(ctx, TopicPartitionOffset{topic, 0, OffsetBeginning}); err != nil {
			t.Fatal(err)
		}
		again := 0
		for again < int(p0) {
			b, err := co.Consume(ctx, 1000, 2*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range b.Messages {
				if m.Partition != 0 || m.Offset != int64(again) {
					t.Fatalf("after seek: %d/%d, want 0/%d", m.Partition, m.Offset, again)
				}
				again++
			}
		}
	}
	if err := co.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := co.Consume(ctx, 10, 0); !errors.Is(err, ErrUnknownHandle) {
		t.Errorf("Consume after Close: %v", err)
	}
}

func TestGroupConsumerCommitResume(t *testing.T) {
	t.Parallel()
	topic := createTopic(t, "group")
	group := uniq("go-group")
	c := dial(t, WithPolledReports())
	ctx := testCtx(t)
	produce := func(from, to int) {
		msgs := make([]Message, 0, to-from)
		for i := from; i < to; i++ {
			msgs = append(msgs, Message{Key: []byte(fmt.Sprint(i)), Value: []byte(fmt.Sprintf("m%d", i))})
		}
		if _, err := c.ProduceBatch(ctx, topic, msgs); err != nil {
			t.Fatal(err)
		}
		if rem, err := c.Flush(ctx); err != nil || rem != 0 {
			t.Fatalf("Flush: %d %v", rem, err)
		}
	}
	cfg := ConsumerConfig{Mode: ModeGroup, Topics: []string{topic}, Group: group, AutoOffsetReset: OffsetEarliest}
	produce(0, 60)

	co, err := c.OpenConsumer(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	first, _ := consumeN(t, ctx, co, 60)
	values := map[string]bool{}
	for _, m := range first {
		values[string(m.Value)] = true
	}
	if len(first) != 60 || len(values) != 60 {
		t.Fatalf("first read: %d messages, %d distinct", len(first), len(values))
	}
	committed, err := co.Commit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var sum int64
	for _, o := range committed {
		if o.Topic != topic {
			t.Errorf("committed %+v", o)
		}
		sum += o.Offset
	}
	if sum != 60 {
		t.Fatalf("committed offsets %+v sum to %d, want 60", committed, sum)
	}
	cm, err := co.Committed(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sum = 0
	for _, o := range cm {
		if o.Offset > 0 {
			sum += o.Offset
		}
	}
	if sum != 60 {
		t.Errorf("Committed() %+v", cm)
	}
	if err := co.Close(ctx); err != nil {
		t.Fatal(err)
	}

	produce(60, 100)
	// a new connection attaches to the same group and resumes after the commit
	c2 := dial(t, WithPolledReports())
	co2, err := c2.OpenConsumer(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	second, _ := consumeN(t, ctx, co2, 40)
	// nothing beyond the 40 new ones
	b, err := co2.Consume(ctx, 1000, 1500*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	second = append(second, b.Messages...)
	var vals []string
	for _, m := range second {
		vals = append(vals, string(m.Value))
	}
	sort.Strings(vals)
	var want []string
	for i := 60; i < 100; i++ {
		want = append(want, fmt.Sprintf("m%d", i))
	}
	sort.Strings(want)
	if strings.Join(vals, ",") != strings.Join(want, ",") {
		t.Fatalf("after resume got %v", vals)
	}
	if _, err := co2.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := co2.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

// clientGoroutines counts goroutines running code of a Client, giving
// goroutines that already signalled their end (deferred wg.Done) a moment
// to be gone.
func clientGoroutines() (int, string) {
	for i := 0; ; i++ {
		n, s := clientGoroutinesNow()
		if n == 0 || i == 100 {
			return n, s
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func clientGoroutinesNow() (int, string) {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	var stacks []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "client-stubs/go.(*Client).") && !strings.Contains(g, "clientGoroutines") {
			n++
			stacks = append(stacks, g)
		}
	}
	return n, strings.Join(stacks, "\n\n")
}

// TestCloseEndsEverything (not parallel, so other tests' clients do not
// count): Close returns while calls are waiting, they fail with ErrClosed,
// every message gets exactly one report, and no goroutine is left.
func TestCloseEndsEverything(t *testing.T) {
	topic := createTopic(t, "close")
	ctx := testCtx(t)
	before := runtime.NumGoroutine()
	c, err := Dial(ctx, WithSocket(env.socket), WithReportsChannel(16), WithLinger(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := clientGoroutinesNow(); n == 0 {
		t.Fatal("no client goroutines found: the leak check would see nothing")
	}
	co, err := c.OpenConsumer(ctx, ConsumerConfig{Topics: []string{topic}})
	if err != nil {
		t.Fatal(err)
	}
	consumeErr := make(chan error, 1)
	go func() {
		for { // events (assignment, eof) come first; then it waits
			if _, err := co.Consume(ctx, 10, time.Hour); err != nil {
				consumeErr <- err
				return
			}
		}
	}()
	// messages: some sent and possibly delivered, the rest still batched
	// (linger of an hour) when Close comes
	for i := 0; i < 100; i++ {
		if _, err := c.Produce(ctx, topic, Message{Value: []byte("x")}); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan struct{})
	go func() {
		c.Close()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		_, stacks := clientGoroutines()
		t.Fatalf("Close hangs:\n%s", stacks)
	}
	if err := <-consumeErr; !errors.Is(err, ErrClosed) || !errors.Is(err, ErrConnectionLost) {
		t.Errorf("Consume during Close: %v", err)
	}
	// the channel (16) holds some reports and is closed; the rest wait for PollReports
	seen := map[uint64]bool{}
	for r := range c.Reports() {
		seen[r.Seq] = true
		if r.Err != nil && !errors.Is(r.Err, ErrConnectionLost) {
			t.Errorf("report error %v", r.Err)
		}
	}
	for {
		reps, err := c.PollReports(ctx, 0, 0)
		if err != nil {
			if !errors.Is(err, ErrClosed) {
				t.Errorf("PollReports after Close: %v", err)
			}
			break
		}
		for _, r := range reps {
			if seen[r.Seq] {
				t.Errorf("seq %d reported twice", r.Seq)
			}
			seen[r.Seq] = true
		}
	}
	if len(seen) != 100 {
		t.Errorf("%d of 100 messages got a report", len(seen))
	}
	if _, err := c.Produce(ctx, topic, Message{Value: []byte("late")}); !errors.Is(err, ErrClosed) {
		t.Errorf("Produce after Close: %v", err)
	}
	if _, err := c.Ping(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("Ping after Close: %v", err)
	}
	c.Close() // again: no-op
	if n, stacks := clientGoroutines(); n != 0 {
		t.Fatalf("%d client goroutines left after Close:\n%s", n, stacks)
	}
	// and nothing else either (give exiting goroutines a moment to be gone)
	for i := 0; i < 100 && runtime.NumGoroutine() > before; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if after := runtime.NumGoroutine(); after > before {
		buf := make([]byte, 1<<20)
		t.Fatalf("%d goroutines before Dial, %d after Close:\n%s", before, after, buf[:runtime.Stack(buf, true)])
	}
}

// TestDaemonGone: a connection the daemon closes fails calls and reports
// with ErrConnectionLost (a server socket that accepts and closes).
func TestDaemonGone(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/fake.sock"
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		conn.Close()
	}()
	_, err = Dial(context.Background(), WithSocket(path))
	if !errors.Is(err, ErrConnectionLost) || errors.Is(err, ErrClosed) {
		t.Fatalf("Dial to a closing server: %v", err)
	}
	if _, err := Dial(context.Background(), WithSocket(dir+"/none.sock")); !errors.Is(err, ErrConnectionLost) {
		t.Fatalf("Dial to nothing: %v", err)
	}
	if n, stacks := clientGoroutines(); n != 0 {
		t.Fatalf("goroutines left:\n%s", stacks)
	}
}

// TestConsumerErrors: the consumer ops' error codes (13-15 and Kafka ones).
func TestConsumerErrors(t *testing.T) {
	t.Parallel()
	topic := createTopic(t, "cerr")
	ctx := testCtx(t)
	c, other := dial(t), dial(t)
	if _, _, err := c.Watermarks(ctx, topic, 99); !errors.Is(err, ErrKafkaUnknownPartition) {
		t.Errorf("watermarks of a missing partition: %v", err)
	}
	if _, err := c.OpenConsumer(ctx, ConsumerConfig{Topics: []string{topic}, Partitions: []int32{7}}); !errors.Is(err, ErrKafkaUnknownPartition) {
		t.Errorf("consumer of a missing partition: %v", err)
	}
	co, err := c.OpenConsumer(ctx, ConsumerConfig{Topics: []string{topic}, Group: uniq("go-cerr"), Partitions: []int32{0, 1}})
	if err != nil {
		t.Fatal(err)
	}
	assigned := map[int32]bool{}
	for len(assigned) < 2 {
		b, err := co.Consume(ctx, 10, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range b.Events {
			if e.Type == EventAssigned {
				assigned[e.Partition] = true
			}
		}
	}
	if err := co.Seek(ctx, TopicPartitionOffset{topic, 3, 0}); !errors.Is(err, ErrNotAssigned) {
		t.Errorf("seek on a partition not leased: %v", err)
	}
	if _, err := co.Commit(ctx, TopicPartitionOffset{topic, 3, 5}); !errors.Is(err, ErrNotAssigned) {
		t.Errorf("commit on a partition not leased: %v", err)
	}
	if got, err := co.Commit(ctx, TopicPartitionOffset{topic, 0, 0}); err != nil || len(got) != 1 || got[0] != (TopicPartitionOffset{topic, 0, 0}) {
		t.Errorf("commit p0@0: %v %v", got, err)
	}
	cm, err := co.Committed(ctx)
	if err != nil || len(cm) != 2 {
		t.Fatalf("committed: %v %v", cm, err)
	}
	for _, o := range cm {
		if (o.Partition == 0 && o.Offset != 0) || (o.Partition == 1 && o.Offset != OffsetInvalid) {
			t.Errorf("committed %+v", o)
		}
	}
	if _, err := other.Call(ctx, "consume", map[string]any{"handle": int64(co.Handle())}); !errors.Is(err, ErrNotOwner) {
		t.Errorf("another connection's handle: %v", err)
	}
	if err := co.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := co.Close(ctx); !errors.Is(err, ErrUnknownHandle) {
		t.Errorf("second close: %v", err)
	}
}

// TestConsumerOptions: explicit partitions and start offsets (simple mode),
// and daemon-side auto-commit (group mode).
func TestConsumerOptions(t *testing.T) {
	t.Parallel()
	topic := createTopic(t, "copts")
	c := dial(t, WithPolledReports())
	ctx := testCtx(t)
	msgs := make([]Message, 10)
	for i := range msgs {
		msgs[i] = Message{Value: []byte(fmt.Sprint(i)), Partition: Int32(1)}
	}
	if _, err := c.ProduceBatch(ctx, topic, msgs); err != nil {
		t.Fatal(err)
	}
	if rem, err := c.Flush(ctx); err != nil || rem != 0 {
		t.Fatalf("Flush: %d %v", rem, err)
	}
	co, err := c.OpenConsumer(ctx, ConsumerConfig{
		Mode: ModeSimple, Topics: []string{topic}, Partitions: []int32{1},
		Offsets: []PartitionOffset{{Partition: 1, Offset: 6}},
	})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := consumeN(t, ctx, co, 4)
	for i, m := range got {
		if m.Partition != 1 || m.Offset != int64(6+i) || string(m.Value) != fmt.Sprint(6+i) {
			t.Fatalf("message %d: %+v", i, m)
		}
	}
	if err := co.Close(ctx); err != nil {
		t.Fatal(err)
	}

	group := uniq("go-autocommit")
	gc, err := c.OpenConsumer(ctx, ConsumerConfig{
		Mode: ModeGroup, Topics: []string{topic}, Group: group, AutoOffsetReset: OffsetEarliest,
		Assignor: "roundrobin", AutoCommitInterval: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	consumeN(t, ctx, gc, 10)
	for {
		cm, err := gc.Committed(ctx, TopicPartition{topic, 1})
		if err != nil {
			t.Fatal(err)
		}
		if len(cm) == 1 && cm[0].Offset == 10 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("auto-commit never committed offset 10: %+v", cm)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := gc.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestOffsetsForTimes: the first offset at or after a time, -1 past the end,
// the watermarks for OffsetBeginning/OffsetEnd, and a consumer seeking there.
func TestOffsetsForTimes(t *testing.T) {
	t.Parallel()
	topic := createTopic(t, "times")
	c := dial(t)
	ctx := testCtx(t)
	base := time.Now().Add(-10 * time.Minute).Truncate(time.Millisecond)
	for i := 0; i < 10; i++ {
		for p := int32(0); p < 2; p++ {
			m := Message{Value: []byte(fmt.Sprintf("t%d-%d", p, i)), Partition: Int32(p),
				Timestamp: base.Add(time.Duration(i) * time.Second)}
			if _, err := c.ProduceSync(ctx, topic, m); err != nil {
				t.Fatal(err)
			}
		}
	}
	ms := func(d time.Duration) int64 { return base.Add(d).UnixMilli() }
	got, err := c.OffsetsForTimes(ctx,
		TopicPartitionOffset{topic, 0, ms(3 * time.Second)},
		TopicPartitionOffset{topic, 1, ms(4500 * time.Millisecond)},
		TopicPartitionOffset{topic, 2, ms(time.Hour)},
		TopicPartitionOffset{topic, 3, OffsetEnd})
	if err != nil {
		t.Fatal(err)
	}
	want := []TopicPartitionOffset{{topic, 0, 3}, {topic, 1, 5}, {topic, 2, -1}, {topic, 3, 0}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("OffsetsForTimes = %v, want %v", got, want)
	}
	co, err := c.OpenConsumer(ctx, ConsumerConfig{Topics: []string{topic}, Partitions: []int32{0}, AutoOffsetReset: OffsetEarliest})
	if err != nil {
		t.Fatal(err)
	}
	at, err := c.OffsetsForTimes(ctx, TopicPartitionOffset{topic, 0, ms(8 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	if err := co.Seek(ctx, at...); err != nil {
		t.Fatal(err)
	}
	msgs, _ := consumeN(t, ctx, co, 2)
	if len(msgs) != 2 || msgs[0].Offset != 8 || msgs[1].Offset != 9 || string(msgs[0].Value) != "t0-8" {
		t.Fatalf("after seeking to the time of record 8: %+v", msgs)
	}
	if _, err := c.OffsetsForTimes(ctx, TopicPartitionOffset{uniq("go-missing"), 0, 0}); !errors.Is(err, ErrKafkaUnknownTopic) {
		t.Errorf("missing topic: %v", err)
	}
}
