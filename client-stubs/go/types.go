package kafkad

import "time"

// Header is one Kafka record header. A nil Value is sent as nil.
type Header struct {
	Key   string
	Value []byte
}

// Message is a record to produce. A nil Value is a null value (a tombstone);
// an empty non-nil Value is an empty value.
type Message struct {
	Key     []byte
	Value   []byte
	Headers []Header
	// Timestamp (ms precision); zero means "now" (the daemon's clock).
	Timestamp time.Time
	// Partition forces a partition; nil lets the partitioner choose.
	Partition *int32
}

// Int32 returns a pointer to p, for Message.Partition.
func Int32(p int32) *int32 { return &p }

// RecordMetadata is where a message was written.
type RecordMetadata struct {
	Topic     string
	Partition int32
	Offset    int64
}

// DeliveryReport is the outcome of one report-mode message: Seq is the
// number Produce returned (per Client, the first message is 1). Err is nil
// on success; Offset is -1 when unknown (failure, or acks=0).
type DeliveryReport struct {
	Seq       uint64
	Topic     string
	Partition int32
	Offset    int64
	Err       error
}

// HelloInfo is the daemon's answer to hello: its version and limits.
type HelloInfo struct {
	Version        int
	Server         string
	MaxFrame       int
	MaxBatch       int
	MaxPending     int
	Clusters       []string
	DefaultCluster string
}

// Broker is one broker of a cluster.
type Broker struct {
	ID   int32
	Host string
	Port int
}

// PartitionMetadata describes one partition. Err is non-nil when the
// partition has a problem (e.g. no leader).
type PartitionMetadata struct {
	ID       int32
	Leader   int32
	Replicas []int32
	ISRs     []int32
	Err      error
}

// TopicMetadata describes one topic; a topic that does not exist has Err
// matching ErrKafkaUnknownTopic.
type TopicMetadata struct {
	Name       string
	Err        error
	Partitions []PartitionMetadata
}

// Metadata is the result of Client.Metadata.
type Metadata struct {
	Cluster string
	Brokers []Broker
	Topics  []TopicMetadata
}

// ClusterStats are the per-cluster statistics of Client.Stats.
type ClusterStats struct {
	Bootstrap string
	OutqLen   int64
	// Librdkafka is librdkafka's latest statistics JSON ("" before the first
	// interval).
	Librdkafka string
}

// Stats is the result of Client.Stats: the daemon's counters (uptime_ms,
// connections, produced, delivered, ...) and per-cluster statistics.
type Stats struct {
	Daemon   map[string]int64
	Clusters map[string]ClusterStats
}
