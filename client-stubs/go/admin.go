package kafkad

import (
	"context"
)

// Helpers for results decoded generically (maps as map[string]any).

func mapGet(v any, key string) any {
	if m, ok := v.(map[string]any); ok {
		return m[key]
	}
	return nil
}

func asInt(v any) (int64, bool) {
	switch x := v.(type) {
	case int64:
		return x, true
	case uint64:
		return int64(x), true
	}
	return 0, false
}

func asStr(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case []byte:
		return string(x)
	}
	return ""
}

func asList(v any) []any {
	l, _ := v.([]any)
	return l
}

func asInt32s(v any) []int32 {
	l := asList(v)
	out := make([]int32, 0, len(l))
	for _, e := range l {
		n, _ := asInt(e)
		out = append(out, int32(n))
	}
	return out
}

// asError turns a decoded error map into an error (nil for nil).
func asError(v any) error {
	m, ok := v.(map[string]any)
	if !ok {
		return nil
	}
	code, _ := asInt(m["code"])
	retriable, _ := m["retriable"].(bool)
	return newWireError(int(code), asStr(m["name"]), asStr(m["message"]), retriable)
}

func (h *HelloInfo) parse(res []byte) error {
	v, err := decodeValue(res, false)
	if err != nil {
		return protocolErr("hello result: %v", err)
	}
	m, ok := v.(map[string]any)
	if !ok {
		return protocolErr("hello result is not a map")
	}
	geti := func(k string) int { n, _ := asInt(m[k]); return int(n) }
	h.Version = geti("version")
	h.Server = asStr(m["server"])
	h.MaxFrame = geti("max_frame")
	h.MaxBatch = geti("max_batch")
	h.MaxPending = geti("max_pending")
	h.DefaultCluster = asStr(m["default_cluster"])
	h.Clusters = nil
	for _, c := range asList(m["clusters"]) {
		h.Clusters = append(h.Clusters, asStr(c))
	}
	return nil
}

// Metadata returns the brokers and the given topics (all topics when none
// are given) of the client's cluster. A topic that does not exist is listed
// with Err matching ErrKafkaUnknownTopic. The daemon's timeout is what is
// left of ctx's deadline (default 5s).
func (c *Client) Metadata(ctx context.Context, topics ...string) (*Metadata, error) {
	args := c.clusterArgs(2)
	if len(topics) > 0 {
		args = append(args, mapEntry{"topics", topics})
	}
	args = append(args, mapEntry{"timeout_ms", timeoutMs(ctx, 5000, 600000)})
	res, err := c.call(ctx, "metadata", args)
	if err != nil {
		return nil, err
	}
	return parseMetadata(res)
}

func parseMetadata(res []byte) (*Metadata, error) {
	v, err := decodeValue(res, false)
	if err != nil {
		return nil, protocolErr("metadata result: %v", err)
	}
	md := &Metadata{Cluster: asStr(mapGet(v, "cluster"))}
	for _, b := range asList(mapGet(v, "brokers")) {
		id, _ := asInt(mapGet(b, "id"))
		port, _ := asInt(mapGet(b, "port"))
		md.Brokers = append(md.Brokers, Broker{ID: int32(id), Host: asStr(mapGet(b, "host")), Port: int(port)})
	}
	for _, t := range asList(mapGet(v, "topics")) {
		tm := TopicMetadata{Name: asStr(mapGet(t, "name")), Err: asError(mapGet(t, "error"))}
		for _, p := range asList(mapGet(t, "partitions")) {
			id, _ := asInt(mapGet(p, "id"))
			leader, _ := asInt(mapGet(p, "leader"))
			tm.Partitions = append(tm.Partitions, PartitionMetadata{
				ID: int32(id), Leader: int32(leader),
				Replicas: asInt32s(mapGet(p, "replicas")), ISRs: asInt32s(mapGet(p, "isrs")),
				Err: asError(mapGet(p, "error")),
			})
		}
		md.Topics = append(md.Topics, tm)
	}
	return md, nil
}

// Stats returns the daemon's counters and the statistics of the client's
// cluster (all clusters when the client names none).
func (c *Client) Stats(ctx context.Context) (*Stats, error) {
	res, err := c.call(ctx, "stats", c.clusterArgs(0))
	if err != nil {
		return nil, err
	}
	return parseStats(res)
}

func parseStats(res []byte) (*Stats, error) {
	v, err := decodeValue(res, false)
	if err != nil {
		return nil, protocolErr("stats result: %v", err)
	}
	st := &Stats{Daemon: map[string]int64{}, Clusters: map[string]ClusterStats{}}
	if m, ok := mapGet(v, "daemon").(map[string]any); ok {
		for k, x := range m {
			if n, ok := asInt(x); ok {
				st.Daemon[k] = n
			}
		}
	}
	if m, ok := mapGet(v, "clusters").(map[string]any); ok {
		for name, x := range m {
			q, _ := asInt(mapGet(x, "outq_len"))
			st.Clusters[name] = ClusterStats{
				Bootstrap:  asStr(mapGet(x, "bootstrap")),
				OutqLen:    q,
				Librdkafka: asStr(mapGet(x, "librdkafka")),
			}
		}
	}
	return st, nil
}

// Watermarks returns the low and high watermark of a partition (high is the
// next offset to be written).
func (c *Client) Watermarks(ctx context.Context, topic string, partition int32) (low, high int64, err error) {
	args := c.clusterArgs(3)
	args = append(args, mapEntry{"topic", topic}, mapEntry{"partition", partition},
		mapEntry{"timeout_ms", timeoutMs(ctx, 5000, 600000)})
	res, err := c.call(ctx, "watermarks", args)
	if err != nil {
		return 0, 0, err
	}
	v, err := decodeValue(res, false)
	if err != nil {
		return 0, 0, protocolErr("watermarks result: %v", err)
	}
	low, ok1 := asInt(mapGet(v, "low"))
	high, ok2 := asInt(mapGet(v, "high"))
	if !ok1 || !ok2 {
		return 0, 0, protocolErr("watermarks result without low/high")
	}
	return low, high, nil
}

// OffsetsForTimes looks up, for each partition, the earliest offset whose
// record timestamp is at or after the one given in Offset (ms since the
// epoch, or OffsetBeginning / OffsetEnd for the low / high watermark): Kafka's
// ListOffsets, as librdkafka's rd_kafka_offsets_for_times (SPEC 4.16). The
// result is in the order asked; its Offset is -1 where every record is older.
// Seek a consumer there to read from a point in time. The first partition
// that fails fails the call (its error names it).
func (c *Client) OffsetsForTimes(ctx context.Context, timestamps ...TopicPartitionOffset) ([]TopicPartitionOffset, error) {
	args := c.clusterArgs(2)
	args = append(args, mapEntry{"timestamps", tpoList(timestamps)},
		mapEntry{"timeout_ms", timeoutMs(ctx, 5000, 600000)})
	res, err := c.call(ctx, "offsets_for_times", args)
	if err != nil {
		return nil, err
	}
	return parseTPOList(res, "offsets_for_times")
}
