// Package kafkad is a client for kafkad, the per-host Kafka sidecar daemon.
//
// A Client is one Unix-socket connection, safe for concurrent use by many
// goroutines. Requests are pipelined: each gets an id, a writer goroutine
// sends queued frames with one writev, and a reader goroutine routes every
// response to its caller by id, in whatever order responses arrive.
//
// Asynchronous produce (Produce, ProduceBatch) never waits for the daemon:
// messages go into a local batch per topic, sent as one compact produce
// request when it holds WithBatchSize messages, when it is WithLinger old,
// or on Flush. Delivery reports come back as compact runs, piggybacked on
// produce results or answering a poll_reports the client keeps parked at the
// daemon, and reach the application through the Reports channel, a delivery
// callback, or PollReports.
package kafkad

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

const (
	protocolVersion = 1
	defaultMaxFrame = 16 << 20
	// bytes of queued frames above which batches stay in the send queue
	writeQueueLimit = 8 << 20
	pollParkMs      = 5000
	pollMax         = 65536
	closeWriteGrace = 2 * time.Second
)

type reqKind uint8

const (
	kindCall  reqKind = iota // a caller waits on ch
	kindBatch                // an async produce batch
	kindPoll                 // the parked poll_reports
)

type response struct {
	err error
	res []byte // the raw msgpack result
}

type request struct {
	kind reqKind
	ch   chan response // kindCall
	item *outItem      // kindBatch
}

// Client is a connection to kafkad. Create it with Dial; it is safe for
// concurrent use. Close it when done.
type Client struct {
	cfg   config
	conn  *net.UnixConn
	hello HelloInfo

	readMax atomic.Int64 // largest frame accepted from the daemon

	mu      sync.Mutex
	nextID  uint64
	pending map[uint64]*request
	dead    error         // set once the connection is unusable
	deadCh  chan struct{} // closed when dead is set
	closing bool          // Close was called
	closeCh chan struct{} // closed by Close after the connection is down
	changed chan struct{} // broadcast: closed and replaced on state changes

	// writer
	wq      net.Buffers
	wqBytes int
	wkick   chan struct{}
	wdone   chan struct{}

	producer

	reports    chan DeliveryReport
	reportKick chan struct{}
	lingerKick chan struct{}

	wg sync.WaitGroup
}

// Dial connects to the daemon, says hello, and keeps the limits it announces.
func Dial(ctx context.Context, opts ...Option) (*Client, error) {
	cfg := defaultConfig()
	for _, o := range opts {
		o(&cfg)
	}
	path := cfg.socketPath()
	dctx := ctx
	if cfg.dialTimeout > 0 {
		var cancel context.CancelFunc
		dctx, cancel = context.WithTimeout(ctx, cfg.dialTimeout)
		defer cancel()
	}
	var d net.Dialer
	nc, err := d.DialContext(dctx, "unix", path)
	if err != nil {
		return nil, &connError{cause: fmt.Errorf("cannot connect to kafkad at %s: %w", path, err)}
	}
	c := &Client{
		cfg:        cfg,
		conn:       nc.(*net.UnixConn),
		pending:    make(map[uint64]*request),
		deadCh:     make(chan struct{}),
		closeCh:    make(chan struct{}),
		wkick:      make(chan struct{}, 1),
		wdone:      make(chan struct{}),
		reportKick: make(chan struct{}, 1),
		lingerKick: make(chan struct{}, 1),
	}
	c.producer.init(&cfg)
	c.readMax.Store(defaultMaxFrame)
	c.wg.Add(2)
	go c.readLoop()
	go c.writeLoop()
	res, err := c.call(dctx, "hello", omap{{"version", protocolVersion}, {"client", cfg.clientName}})
	if err == nil {
		err = c.hello.parse(res)
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	c.mu.Lock()
	c.applyLimits()
	c.mu.Unlock()
	if !cfg.polled && (cfg.callback == nil || cfg.chanSet) {
		c.reports = make(chan DeliveryReport, max(0, cfg.chanSize))
	}
	c.wg.Add(1)
	go c.lingerLoop()
	if c.reports != nil || (c.cfg.callback != nil && !cfg.polled) {
		c.wg.Add(1)
		go c.dispatchLoop()
	}
	return c, nil
}

// Hello returns what the daemon announced when the client connected.
func (c *Client) Hello() HelloInfo { return c.hello }

// Reports is the channel delivery reports arrive on (nil when turned off by
// WithDeliveryCallback or WithPolledReports). Every report-mode message gets
// exactly one report. The channel is closed by Close: reports still in the
// client then that do not fit its buffer stay available to PollReports.
func (c *Client) Reports() <-chan DeliveryReport { return c.reports }

// Close sends what is still batched locally (as far as the daemon's
// max_pending allows) and closes the connection without waiting for
// outcomes: report-mode messages whose outcome is not known yet get a report
// with an error matching ErrConnectionLost (the daemon still delivers every
// message it received; messages never sent are not delivered). Call Flush
// first to wait for the outcomes. Calls waiting on the connection return an error
// matching ErrClosed. All goroutines of the client have ended when Close
// returns.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		c.wg.Wait()
		return nil
	}
	c.closing = true
	if c.dead == nil {
		c.detachAllLocked()
		c.pumpLocked(true)
	}
	c.broadcastLocked()
	c.mu.Unlock()
	c.kickWriter()
	// let the writer send what is queued, but not forever
	_ = c.conn.SetWriteDeadline(time.Now().Add(closeWriteGrace))
	select {
	case <-c.wdone:
	case <-c.deadCh:
	}
	c.fail(&connError{closed: true})
	close(c.closeCh)
	c.wg.Wait()
	return nil
}

// fail marks the connection dead (once): it is shut down, waiting calls get
// err, and report-mode messages without an outcome get err as their report.
func (c *Client) fail(err error) {
	c.mu.Lock()
	if c.dead != nil {
		c.mu.Unlock()
		return
	}
	if c.closing {
		if ce, ok := err.(*connError); ok && !ce.closed {
			err = &connError{closed: true, cause: ce.cause}
		}
	}
	c.dead = err
	close(c.deadCh)
	_ = c.conn.Close()
	for id, r := range c.pending {
		delete(c.pending, id)
		switch r.kind {
		case kindCall:
			r.ch <- response{err: err}
		case kindBatch:
			c.batchLostLocked(r.item, err)
		}
	}
	c.producerLostLocked(err)
	c.broadcastLocked()
	c.mu.Unlock()
	c.kickReports()
}

// deadErr is the error calls on a closed or dead client return.
func (c *Client) deadErrLocked() error {
	if c.dead != nil {
		return c.dead
	}
	if c.closing {
		return &connError{closed: true}
	}
	return nil
}

func (c *Client) kickWriter() {
	select {
	case c.wkick <- struct{}{}:
	default:
	}
}

func (c *Client) kickReports() {
	select {
	case c.reportKick <- struct{}{}:
	default:
	}
}

func (c *Client) kickLinger() {
	select {
	case c.lingerKick <- struct{}{}:
	default:
	}
}

// broadcastLocked wakes every goroutine waiting in waitLocked.
func (c *Client) broadcastLocked() {
	if c.changed != nil {
		close(c.changed)
		c.changed = nil
	}
}

// waitLocked releases the lock until the state changes, ctx ends or the
// connection dies; returns ctx's error if it ended.
func (c *Client) waitLocked(ctx context.Context) error {
	if c.changed == nil {
		c.changed = make(chan struct{})
	}
	ch := c.changed
	c.mu.Unlock()
	var err error
	select {
	case <-ch:
	case <-c.deadCh:
	case <-ctx.Done():
		err = ctx.Err()
	}
	c.mu.Lock()
	return err
}

// ---------------------------------------------------------------- writing

// enqueueLocked queues the parts of one frame (header included) for the writer.
func (c *Client) enqueueLocked(parts ...[]byte) {
	for _, p := range parts {
		if len(p) > 0 {
			c.wq = append(c.wq, p)
			c.wqBytes += len(p)
		}
	}
	c.kickWriter()
}

func (c *Client) writeLoop() {
	defer c.wg.Done()
	defer close(c.wdone)
	for {
		c.mu.Lock()
		for len(c.wq) == 0 {
			if c.dead != nil || c.closing {
				c.mu.Unlock()
				return
			}
			c.mu.Unlock()
			select {
			case <-c.wkick:
			case <-c.deadCh:
			}
			c.mu.Lock()
		}
		if c.dead != nil {
			c.mu.Unlock()
			return
		}
		bufs := c.wq
		c.wq = nil
		c.wqBytes = 0
		c.mu.Unlock()
		if _, err := bufs.WriteTo(c.conn); err != nil {
			c.fail(&connError{cause: fmt.Errorf("write: %w", err)})
			return
		}
		c.mu.Lock()
		if c.dead == nil && !c.closing {
			c.pumpLocked(false)
		}
		c.mu.Unlock()
	}
}

// frame starts a frame: 4 length bytes to be patched by finishFrame.
func frameStart(capHint int) []byte {
	return make([]byte, 4, capHint+4)
}

func finishFrame(b []byte, extra int) []byte {
	binary.BigEndian.PutUint32(b, uint32(len(b)-4+extra))
	return b
}

// encodeRequest builds the frame of [id, op, args]; args is an encoded map
// (nil: an empty map).
func encodeRequest(id uint64, op string, args []byte) []byte {
	b := frameStart(16 + len(op) + len(args))
	b = appendArrayHeader(b, 3)
	b = appendUint(b, id)
	b = appendStr(b, op)
	if args == nil {
		b = appendMapHeader(b, 0)
	} else {
		b = append(b, args...)
	}
	return finishFrame(b, 0)
}

// ---------------------------------------------------------------- reading

func (c *Client) readLoop() {
	defer c.wg.Done()
	br := bufio.NewReaderSize(c.conn, 256<<10)
	var hdr [4]byte
	for {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			c.fail(&connError{cause: readErr(err)})
			return
		}
		n := int(binary.BigEndian.Uint32(hdr[:]))
		if limit := int(c.readMax.Load()); n == 0 || n > limit {
			c.fail(&connError{cause: protocolErr("frame length %d outside 1..%d", n, limit)})
			return
		}
		payload := make([]byte, n)
		if _, err := io.ReadFull(br, payload); err != nil {
			c.fail(&connError{cause: readErr(err)})
			return
		}
		if err := c.handleFrame(payload); err != nil {
			c.fail(err)
			return
		}
	}
}

func readErr(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return errors.New("kafkad closed the connection")
	}
	return fmt.Errorf("read: %w", err)
}

// parseResponse splits a response frame into id (nil → hasID false), error
// and raw result.
func parseResponse(payload []byte) (id uint64, hasID bool, rerr error, res []byte, err error) {
	d := decoder{b: payload}
	n, err := d.readArrayLen()
	if err != nil || n != 3 {
		return 0, false, nil, nil, protocolErr("response is not [id, error, result]")
	}
	if !d.tryNil() {
		if id, err = d.readUint(); err != nil {
			return 0, false, nil, nil, protocolErr("response id: %v", err)
		}
		hasID = true
	}
	if rerr, err = d.readErrorOrNil(); err != nil {
		return 0, false, nil, nil, protocolErr("response error: %v", err)
	}
	if res, err = d.raw(); err != nil {
		return 0, false, nil, nil, protocolErr("response result: %v", err)
	}
	if !d.done() {
		return 0, false, nil, nil, protocolErr("trailing bytes after the response")
	}
	return id, hasID, rerr, res, nil
}

// handleFrame routes one response; a returned error kills the connection.
func (c *Client) handleFrame(payload []byte) error {
	id, hasID, rerr, res, err := parseResponse(payload)
	if err != nil {
		return &connError{cause: err}
	}
	if !hasID {
		if rerr == nil {
			return &connError{cause: protocolErr("response without id or error")}
		}
		if errors.Is(rerr, ErrBadFrame) {
			return &connError{cause: rerr}
		}
		return nil // an error for a request whose id could not be read: nothing waits for it
	}
	c.mu.Lock()
	r := c.pending[id]
	if r == nil {
		c.mu.Unlock()
		return nil // abandoned by its caller
	}
	delete(c.pending, id)
	switch r.kind {
	case kindCall:
		r.ch <- response{err: rerr, res: res}
	case kindBatch:
		err = c.batchDoneLocked(r.item, rerr, res)
	case kindPoll:
		err = c.pollDoneLocked(rerr, res)
	}
	c.mu.Unlock()
	return err
}

// ---------------------------------------------------------------- calls

// startCall registers a request and queues its frame; the caller waits on
// the returned request's channel.
func (c *Client) startCall(op string, args omap) (uint64, *request, error) {
	var ab []byte
	if args != nil {
		var err error
		if ab, err = appendValue(nil, args); err != nil {
			return 0, nil, err
		}
	}
	return c.startCallBytes(op, ab)
}

func (c *Client) startCallBytes(op string, args []byte) (uint64, *request, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.deadErrLocked(); err != nil {
		return 0, nil, err
	}
	c.nextID++
	id := c.nextID
	frame := encodeRequest(id, op, args)
	if len(frame)-4 > c.maxPayload() {
		return 0, nil, tooLarge("request of %d bytes exceeds max_frame %d", len(frame)-4, c.maxPayload())
	}
	r := &request{kind: kindCall, ch: make(chan response, 1)}
	c.pending[id] = r
	c.enqueueLocked(frame)
	return id, r, nil
}

func tooLarge(format string, args ...any) error {
	return &Error{Code: ErrTooLarge.Code, Name: ErrTooLarge.Name, Message: fmt.Sprintf(format, args...)}
}

func invalidArg(format string, args ...any) error {
	return &Error{Code: ErrInvalidArgument.Code, Name: ErrInvalidArgument.Name, Message: fmt.Sprintf(format, args...)}
}

// await waits for the response of a started call.
func (c *Client) await(ctx context.Context, id uint64, r *request) ([]byte, error) {
	select {
	case resp := <-r.ch:
		return resp.res, resp.err
	case <-ctx.Done():
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
		// the response may have raced in
		select {
		case resp := <-r.ch:
			return resp.res, resp.err
		default:
		}
		return nil, ctx.Err()
	}
}

// call sends op and waits for its raw result.
func (c *Client) call(ctx context.Context, op string, args omap) ([]byte, error) {
	id, r, err := c.startCall(op, args)
	if err != nil {
		return nil, err
	}
	return c.await(ctx, id, r)
}

func (c *Client) maxPayload() int {
	if c.hello.MaxFrame > 0 {
		return c.hello.MaxFrame
	}
	return defaultMaxFrame
}

// clusterArgs starts an args map with the client's cluster, if any.
func (c *Client) clusterArgs(n int) omap {
	m := make(omap, 0, n+1)
	if c.cfg.cluster != "" {
		m = append(m, mapEntry{"cluster", c.cfg.cluster})
	}
	return m
}

// timeoutMs is what is left of ctx's deadline in ms (def when none),
// clamped to [1, maxMs].
func timeoutMs(ctx context.Context, def, maxMs int64) int64 {
	ms := def
	if dl, ok := ctx.Deadline(); ok {
		ms = time.Until(dl).Milliseconds()
	}
	return min(max(ms, 1), maxMs)
}

// Call sends any op with args (nil for none) and returns its result decoded
// (maps as map[string]any, integers as int64, bytes as []byte). For ops
// newer than this client; errors are *Error / *KafkaError as usual.
func (c *Client) Call(ctx context.Context, op string, args map[string]any) (any, error) {
	var ab []byte
	if args != nil {
		var err error
		if ab, err = appendValue(nil, args); err != nil {
			return nil, err
		}
	}
	id, r, err := c.startCallBytes(op, ab)
	if err != nil {
		return nil, err
	}
	res, err := c.await(ctx, id, r)
	if err != nil {
		return nil, err
	}
	return decodeResult(res)
}

func decodeResult(res []byte) (any, error) {
	v, err := decodeValue(res, false)
	if err != nil {
		return nil, protocolErr("result: %v", err)
	}
	return v, nil
}

// Ping measures a round trip to the daemon.
func (c *Client) Ping(ctx context.Context) (time.Duration, error) {
	t0 := time.Now()
	if _, err := c.call(ctx, "ping", nil); err != nil {
		return 0, err
	}
	return time.Since(t0), nil
}
