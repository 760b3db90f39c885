package kafkad

import (
	"os"
	"time"
)

// DefaultSocket is the daemon's socket when neither WithSocket nor
// $KAFKAD_SOCKET names one.
const DefaultSocket = "/run/kafkad/kafkad.sock"

// ClientName is sent in hello unless WithClientName says otherwise.
const ClientName = "kafkad-go/0.1"

// Ack is the acknowledgement mode of asynchronous produce calls.
type Ack string

const (
	// AckReport (default): every message gets exactly one DeliveryReport.
	AckReport Ack = "report"
	// AckNone: fire and forget; Produce returns seq 0 and no report follows
	// (outcomes are only counted in the daemon's stats).
	AckNone Ack = "none"
)

// Option configures a Client (see Dial).
type Option func(*config)

type config struct {
	socket         string
	cluster        string
	clientName     string
	batchSize      int
	batchBytes     int
	linger         time.Duration
	dialTimeout    time.Duration
	callback       func(DeliveryReport)
	chanSize       int
	chanSet        bool
	polled         bool
	maxOutstanding int
	partitioner    string
	ack            Ack
}

func defaultConfig() config {
	return config{
		clientName:     ClientName,
		batchSize:      10000,
		batchBytes:     1 << 20,
		linger:         5 * time.Millisecond,
		dialTimeout:    10 * time.Second,
		chanSize:       4096,
		maxOutstanding: 1 << 20,
		ack:            AckReport,
	}
}

func (c *config) socketPath() string {
	if c.socket != "" {
		return c.socket
	}
	if s := os.Getenv("KAFKAD_SOCKET"); s != "" {
		return s
	}
	return DefaultSocket
}

// WithSocket sets the daemon's socket path (default $KAFKAD_SOCKET, else
// DefaultSocket).
func WithSocket(path string) Option { return func(c *config) { c.socket = path } }

// WithCluster names the cluster sent with every request (default: the
// daemon's default_cluster).
func WithCluster(name string) Option { return func(c *config) { c.cluster = name } }

// WithClientName sets the free-text name sent in hello (shown in daemon logs).
func WithClientName(name string) Option { return func(c *config) { c.clientName = name } }

// WithBatchSize sends a local batch once it holds n messages (default 10000;
// capped by the daemon's max_batch and max_pending/2).
func WithBatchSize(n int) Option { return func(c *config) { c.batchSize = n } }

// WithBatchBytes sends a local batch once it holds about n bytes (default
// 1 MiB; capped by max_frame/2).
func WithBatchBytes(n int) Option { return func(c *config) { c.batchBytes = n } }

// WithLinger sends a local batch at the latest d after its first message
// (default 5ms). 0 sends every Produce call as its own request.
func WithLinger(d time.Duration) Option { return func(c *config) { c.linger = d } }

// WithDialTimeout bounds connecting and the hello exchange in Dial (default
// 10s; the context's deadline applies too).
func WithDialTimeout(d time.Duration) Option { return func(c *config) { c.dialTimeout = d } }

// WithDeliveryCallback calls fn with every DeliveryReport, in one goroutine of
// the client (reports of one partition in order). fn must not block for long:
// it holds up the following reports. When set, the Reports channel is off
// unless WithReportsChannel is given too.
func WithDeliveryCallback(fn func(DeliveryReport)) Option {
	return func(c *config) { c.callback = fn }
}

// WithReportsChannel sets the capacity of the Reports channel (default 4096)
// and turns it on even when a delivery callback is set.
func WithReportsChannel(capacity int) Option {
	return func(c *config) {
		c.chanSize = capacity
		c.chanSet = true
	}
}

// WithPolledReports turns the Reports channel and callback off: reports wait
// in the client until PollReports takes them.
func WithPolledReports() Option { return func(c *config) { c.polled = true } }

// WithMaxOutstanding bounds the report-mode messages produced whose report
// has not been handed to the application yet (default 1<<20). Produce blocks
// (until its context ends) while the bound is reached: an application that
// does not read its reports stops producing instead of growing memory.
func WithMaxOutstanding(n int) Option { return func(c *config) { c.maxOutstanding = n } }

// WithPartitioner overrides the topic's partitioner for every produce
// request of this client ("random", "consistent", "consistent_random",
// "murmur2", "murmur2_random", "fnv1a", "fnv1a_random", "pykafka_hashing").
func WithPartitioner(name string) Option { return func(c *config) { c.partitioner = name } }

// WithAck sets the acknowledgement mode of Produce and ProduceBatch
// (default AckReport). ProduceSync always waits.
func WithAck(a Ack) Option { return func(c *config) { c.ack = a } }
