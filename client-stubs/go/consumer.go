package kafkad

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// ConsumerMode selects how a daemon-held consumer gets its partitions.
type ConsumerMode string

const (
	// ModeSimple: the daemon assigns all (or the listed) partitions of one
	// topic itself; a Group, if given, is used only for commits.
	ModeSimple ConsumerMode = "simple"
	// ModeGroup: a Kafka-coordinated consumer group member.
	ModeGroup ConsumerMode = "group"
	// ModeZookeeper: a member of a PyKafka ZooKeeper-balanced group (SPEC
	// 4.9.1); needs Group, one topic and ZookeeperConnect.
	ModeZookeeper ConsumerMode = "zookeeper"
)

// OffsetReset is where a consumer starts without a committed offset.
type OffsetReset string

const (
	OffsetEarliest OffsetReset = "earliest"
	OffsetLatest   OffsetReset = "latest" // the daemon's default
)

// Special offsets.
const (
	OffsetBeginning int64 = -2    // Seek: the earliest offset
	OffsetEnd       int64 = -1    // Seek: the latest offset
	OffsetInvalid   int64 = -1001 // Committed: nothing committed
)

// PartitionOffset is a start offset for a simple consumer.
type PartitionOffset struct {
	Partition int32
	Offset    int64
}

// TopicPartition names a partition.
type TopicPartition struct {
	Topic     string
	Partition int32
}

// TopicPartitionOffset is an offset of a partition (for commits: the next
// offset to read).
type TopicPartitionOffset struct {
	Topic     string
	Partition int32
	Offset    int64
}

// ConsumerConfig describes the daemon-held consumer to attach to (SPEC 4.9).
// Zero values leave the daemon's defaults.
type ConsumerConfig struct {
	// Cluster overrides the client's cluster.
	Cluster string
	Mode    ConsumerMode // default ModeSimple
	Topics  []string
	Group   string
	// Partitions (simple mode): only these partitions of the single topic.
	Partitions []int32
	// Offsets (simple mode): explicit start offsets.
	Offsets            []PartitionOffset
	AutoOffsetReset    OffsetReset
	ResetOffsetOnStart bool
	// Assignor (group mode): "range" (default), "roundrobin",
	// "cooperative-sticky".
	Assignor string
	// AutoCommitInterval > 0 lets the daemon commit what this connection
	// received on that interval (needs a Group).
	AutoCommitInterval time.Duration
	// ZookeeperConnect (zookeeper mode): "host:port[,host:port][/chroot]".
	ZookeeperConnect string
	// ZookeeperSessionTimeout, ZookeeperConnectionTimeout, RebalanceBackoff
	// (zookeeper mode): zero leaves the daemon's 10 s, 6 s and 2 s.
	ZookeeperSessionTimeout    time.Duration
	ZookeeperConnectionTimeout time.Duration
	RebalanceBackoff           time.Duration
}

// ConsumerMessage is one consumed record. Key, Value and header values
// share the memory of the response they came in (never reused by the
// client); a nil Value is a null value.
type ConsumerMessage struct {
	Topic     string
	Partition int32
	Offset    int64
	Timestamp time.Time // zero when unknown
	Key       []byte
	Value     []byte
	Headers   []Header
}

// EventType is the kind of a ConsumerEvent.
type EventType string

const (
	EventAssigned EventType = "assigned" // this connection got the partition
	EventRevoked  EventType = "revoked"  // ... lost it
	EventEOF      EventType = "eof"      // read to the end of it
)

// ConsumerEvent reports a partition change or end of partition. Offset is
// set for EventEOF, -1 otherwise.
type ConsumerEvent struct {
	Type      EventType
	Topic     string
	Partition int32
	Offset    int64
}

// Batch is the result of Consume.
type Batch struct {
	Messages []ConsumerMessage
	Events   []ConsumerEvent
}

// Consumer is this connection's attachment to a daemon-held consumer. Its
// methods are safe for concurrent use; Consume calls run one at a time.
type Consumer struct {
	c        *Client
	handle   uint64
	key      string
	attached int
	memberID string

	mu       sync.Mutex // serialises Consume
	inflight *consumeCall
	closed   atomic.Bool
}

type consumeCall struct {
	id uint64
	r  *request
}

// OpenConsumer attaches this connection to the daemon-held consumer that
// cfg describes (creating it if needed) and returns its handle.
func (c *Client) OpenConsumer(ctx context.Context, cfg ConsumerConfig) (*Consumer, error) {
	args := make(omap, 0, 10)
	if cfg.Cluster != "" {
		args = append(args, mapEntry{"cluster", cfg.Cluster})
	} else if c.cfg.cluster != "" {
		args = append(args, mapEntry{"cluster", c.cfg.cluster})
	}
	if cfg.Mode != "" {
		args = append(args, mapEntry{"mode", string(cfg.Mode)})
	}
	if len(cfg.Topics) == 0 {
		return nil, invalidArg("topics: at least one topic is needed")
	}
	args = append(args, mapEntry{"topics", cfg.Topics})
	if cfg.Group != "" {
		args = append(args, mapEntry{"group", cfg.Group})
	}
	if len(cfg.Partitions) > 0 {
		args = append(args, mapEntry{"partitions", cfg.Partitions})
	}
	if len(cfg.Offsets) > 0 {
		l := make([]any, len(cfg.Offsets))
		for i, o := range cfg.Offsets {
			l[i] = []any{o.Partition, o.Offset}
		}
		args = append(args, mapEntry{"offsets", l})
	}
	if cfg.AutoOffsetReset != "" {
		args = append(args, mapEntry{"auto_offset_reset", string(cfg.AutoOffsetReset)})
	}
	if cfg.ResetOffsetOnStart {
		args = append(args, mapEntry{"reset_offset_on_start", true})
	}
	if cfg.Assignor != "" {
		args = append(args, mapEntry{"assignor", cfg.Assignor})
	}
	if cfg.AutoCommitInterval > 0 {
		args = append(args, mapEntry{"auto_commit_interval_ms", max(1, cfg.AutoCommitInterval.Milliseconds())})
	}
	if cfg.ZookeeperConnect != "" {
		args = append(args, mapEntry{"zookeeper_connect", cfg.ZookeeperConnect})
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"zookeeper_session_timeout_ms", cfg.ZookeeperSessionTimeout},
		{"zookeeper_connection_timeout_ms", cfg.ZookeeperConnectionTimeout},
		{"rebalance_backoff_ms", cfg.RebalanceBackoff},
	} {
		if d.v > 0 {
			args = append(args, mapEntry{d.name, max(1, d.v.Milliseconds())})
		}
	}
	res, err := c.call(ctx, "consumer_open", args)
	if err != nil {
		return nil, err
	}
	v, err := decodeValue(res, false)
	if err != nil {
		return nil, protocolErr("consumer_open result: %v", err)
	}
	h, ok := asInt(mapGet(v, "handle"))
	if !ok {
		return nil, protocolErr("consumer_open result without handle")
	}
	n, _ := asInt(mapGet(v, "attached"))
	return &Consumer{c: c, handle: uint64(h), key: asStr(mapGet(v, "consumer")), attached: int(n),
		memberID: asStr(mapGet(v, "member_id"))}, nil
}

// MemberID is the id the daemon registered in ZooKeeper (zookeeper mode;
// empty otherwise).
func (co *Consumer) MemberID() string { return co.memberID }

// Handle is the daemon's handle of this attachment.
func (co *Consumer) Handle() uint64 { return co.handle }

// Key is the daemon's key of the shared consumer.
func (co *Consumer) Key() string { return co.key }

// Attached is how many connections were attached when this one attached.
func (co *Consumer) Attached() int { return co.attached }

func (co *Consumer) closedErr() error {
	return &Error{Code: ErrUnknownHandle.Code, Name: ErrUnknownHandle.Name, Message: "the consumer is closed"}
}

// Consume returns up to maxMessages messages (<= 0: 1000) and the events of this
// connection's partitions, waiting up to timeout for at least one.
// If ctx ends first, the request stays pending and its answer is returned
// by the next Consume: no message handed out by the daemon is skipped.
func (co *Consumer) Consume(ctx context.Context, maxMessages int, timeout time.Duration) (Batch, error) {
	co.mu.Lock()
	defer co.mu.Unlock()
	if co.inflight == nil {
		if co.closed.Load() {
			return Batch{}, co.closedErr()
		}
		if maxMessages <= 0 {
			maxMessages = 1000
		}
		ms := min(max(int64(0), timeout.Milliseconds()), 3600000)
		id, r, err := co.c.startCall("consume", omap{{"handle", co.handle}, {"max", maxMessages}, {"timeout_ms", ms}})
		if err != nil {
			return Batch{}, err
		}
		co.inflight = &consumeCall{id, r}
	}
	select {
	case resp := <-co.inflight.r.ch:
		co.inflight = nil
		if resp.err != nil {
			return Batch{}, resp.err
		}
		return parseConsume(resp.res)
	case <-ctx.Done():
		return Batch{}, ctx.Err()
	}
}

func parseConsume(res []byte) (Batch, error) {
	var (
		b      Batch
		topics []string
		tidx   []int
	)
	d := decoder{b: res}
	err := d.eachMapKey(func(k []byte) error {
		switch string(k) {
		case "topics":
			n, err := d.readArrayLen()
			if err != nil {
				return err
			}
			topics = make([]string, n)
			for i := range topics {
				if topics[i], err = d.readStr(); err != nil {
					return err
				}
			}
		case "messages":
			n, err := d.readArrayLen()
			if err != nil {
				return err
			}
			b.Messages = make([]ConsumerMessage, n)
			tidx = make([]int, n)
			for i := range b.Messages {
				if tidx[i], err = readConsumed(&d, &b.Messages[i]); err != nil {
					return err
				}
			}
		case "events":
			n, err := d.readArrayLen()
			if err != nil {
				return err
			}
			b.Events = make([]ConsumerEvent, 0, n)
			for i := 0; i < n; i++ {
				e := ConsumerEvent{Offset: -1}
				err := d.eachMapKey(func(k []byte) error {
					var err error
					var v int64
					switch string(k) {
					case "type":
						var s string
						s, err = d.readStr()
						e.Type = EventType(s)
					case "topic":
						e.Topic, err = d.readStr()
					case "partition":
						v, err = d.readInt()
						e.Partition = int32(v)
					case "offset":
						e.Offset, err = d.readInt()
					default:
						err = d.skip()
					}
					return err
				})
				if err != nil {
					return err
				}
				b.Events = append(b.Events, e)
			}
		default:
			return d.skip()
		}
		return nil
	})
	if err != nil {
		return Batch{}, protocolErr("consume result: %v", err)
	}
	for i := range b.Messages {
		if tidx[i] < 0 || tidx[i] >= len(topics) {
			return Batch{}, protocolErr("consume result: topic index %d out of range", tidx[i])
		}
		b.Messages[i].Topic = topics[tidx[i]]
	}
	return b, nil
}

// readConsumed reads [topic_index, partition, offset, timestamp, key, value, headers].
func readConsumed(d *decoder, m *ConsumerMessage) (int, error) {
	if n, err := d.readArrayLen(); err != nil || n != 7 {
		return 0, &decodeError{"message is not [topic_index, partition, offset, timestamp, key, value, headers]"}
	}
	ti, err := d.readInt()
	if err != nil {
		return 0, err
	}
	p, err := d.readInt()
	if err != nil {
		return 0, err
	}
	m.Partition = int32(p)
	if m.Offset, err = d.readInt(); err != nil {
		return 0, err
	}
	ts, err := d.readInt()
	if err != nil {
		return 0, err
	}
	if ts >= 0 {
		m.Timestamp = time.UnixMilli(ts)
	}
	if m.Key, err = d.readBytes(); err != nil {
		return 0, err
	}
	if m.Value, err = d.readBytes(); err != nil {
		return 0, err
	}
	if !d.tryNil() {
		n, err := d.readArrayLen()
		if err != nil {
			return 0, err
		}
		m.Headers = make([]Header, n)
		for i := range m.Headers {
			if k, err := d.readArrayLen(); err != nil || k != 2 {
				return 0, &decodeError{"header is not [name, value]"}
			}
			if m.Headers[i].Key, err = d.readStr(); err != nil {
				return 0, err
			}
			if m.Headers[i].Value, err = d.readBytes(); err != nil {
				return 0, err
			}
		}
	}
	return int(ti), nil
}

func tpoList(offsets []TopicPartitionOffset) []any {
	l := make([]any, len(offsets))
	for i, o := range offsets {
		l[i] = []any{o.Topic, o.Partition, o.Offset}
	}
	return l
}

func parseTPOList(res []byte, what string) ([]TopicPartitionOffset, error) {
	v, err := decodeValue(res, false)
	if err != nil {
		return nil, protocolErr("%s result: %v", what, err)
	}
	var out []TopicPartitionOffset
	for _, e := range asList(mapGet(v, "offsets")) {
		l := asList(e)
		if len(l) != 3 {
			return nil, protocolErr("%s result: offset entry is not [topic, partition, offset]", what)
		}
		p, _ := asInt(l[1])
		o, _ := asInt(l[2])
		out = append(out, TopicPartitionOffset{asStr(l[0]), int32(p), o})
	}
	return out, nil
}

// Commit commits offsets (the next offset to read of each partition) to the
// group; with none it commits everything this connection received. Returns
// what was committed, once the group coordinator acknowledged it.
func (co *Consumer) Commit(ctx context.Context, offsets ...TopicPartitionOffset) ([]TopicPartitionOffset, error) {
	args := omap{{"handle", co.handle}}
	if len(offsets) > 0 {
		args = append(args, mapEntry{"offsets", tpoList(offsets)})
	}
	res, err := co.c.call(ctx, "commit", args)
	if err != nil {
		return nil, err
	}
	return parseTPOList(res, "commit")
}

// Committed returns the group's committed offsets of the given partitions
// (default: all the consumer holds); OffsetInvalid when nothing is committed.
func (co *Consumer) Committed(ctx context.Context, partitions ...TopicPartition) ([]TopicPartitionOffset, error) {
	args := omap{{"handle", co.handle}}
	if len(partitions) > 0 {
		l := make([]any, len(partitions))
		for i, p := range partitions {
			l[i] = []any{p.Topic, p.Partition}
		}
		args = append(args, mapEntry{"partitions", l})
	}
	args = append(args, mapEntry{"timeout_ms", timeoutMs(ctx, 5000, 600000)})
	res, err := co.c.call(ctx, "committed", args)
	if err != nil {
		return nil, err
	}
	return parseTPOList(res, "committed")
}

// Seek moves partitions leased to this connection to the given offsets
// (OffsetBeginning, OffsetEnd or an offset); buffered messages of those
// partitions are dropped.
func (co *Consumer) Seek(ctx context.Context, offsets ...TopicPartitionOffset) error {
	_, err := co.c.call(ctx, "seek", omap{{"handle", co.handle}, {"offsets", tpoList(offsets)}})
	return err
}

// Close detaches this connection from the consumer: its partitions move to
// other attached connections (rewound to the last commit when needed), and
// the last detach closes the Kafka consumer. A Consume waiting meanwhile
// returns what the daemon had for it.
func (co *Consumer) Close(ctx context.Context) error {
	_, err := co.c.call(ctx, "consumer_close", omap{{"handle", co.handle}})
	if err == nil {
		co.closed.Store(true)
	}
	return err
}
