package kafkad

import (
	"context"
	"fmt"
	"time"
)

// producer is the produce-side state of a Client (guarded by Client.mu).
type producer struct {
	batchN     int
	batchBytes int
	maxElem    int
	maxPending uint64

	batches  map[string]*openBatch // the open local batch of each topic
	outq     []*outItem            // detached batches and sync produces, in send order
	outqHead int
	outqMsgs int

	nextSeq   uint64 // next client seq (report mode)
	sentRep   uint64 // report-mode messages sent to the daemon
	collected uint64 // ... whose outcome reached the client
	handed    uint64 // reports handed to the application
	segs      seqMap
	runs      []clientRun // reports not handed out yet
	runsHead  int
	runsMsgs  int

	pollOut     bool
	pollRetryAt time.Time

	// DaemonPending is the daemon's count of this connection's report-mode
	// messages without an outcome, as of the last poll_reports.
	daemonPending uint64
	asyncErrors   uint64
	lastAsyncErr  error
}

type openBatch struct {
	topic string
	buf   []byte // encoded messages
	n     int
	cs    clientSeqs
	t0    time.Time
}

// outItem is a request waiting in the send queue: an async batch (frame
// built when sent, so it gets its id then) or a prebuilt sync produce.
type outItem struct {
	topic     string
	ack       Ack
	elems     []byte
	n         int
	cs        clientSeqs
	frame     []byte // prebuilt frame (ProduceSync)
	sent      bool
	cancelled bool
}

func (p *producer) init(cfg *config) {
	p.batches = make(map[string]*openBatch)
	p.nextSeq = 1
	p.batchN = max(1, cfg.batchSize)
	p.batchBytes = max(1, cfg.batchBytes)
	p.maxPending = 1 << 20
	p.maxElem = defaultMaxFrame - 1024
}

// applyLimits adapts batching to the daemon's hello limits (lock held).
func (c *Client) applyLimits() {
	h := c.hello
	if h.MaxPending > 0 {
		c.maxPending = uint64(h.MaxPending)
	}
	n := c.cfg.batchSize
	if h.MaxBatch > 0 {
		n = min(n, h.MaxBatch)
	}
	// leave room under max_pending for a second batch in flight
	n = min(n, int(c.maxPending/2))
	c.batchN = max(1, n)
	payload := c.maxPayload()
	c.batchBytes = max(1, min(c.cfg.batchBytes, payload/2))
	c.maxElem = payload - 1024
	c.readMax.Store(int64(max(payload+64, defaultMaxFrame)))
}

// ---------------------------------------------------------------- encoding

func msgSize(m *Message) int {
	n := len(m.Value) + len(m.Key) + 40
	for _, h := range m.Headers {
		n += len(h.Key) + len(h.Value) + 12
	}
	return n
}

// appendMessage encodes one element of `messages`: bare bytes when only the
// value is set, else a map with the fields that are set.
func appendMessage(b []byte, m *Message) []byte {
	if m.Key == nil && len(m.Headers) == 0 && m.Timestamp.IsZero() && m.Partition == nil && m.Value != nil {
		return appendBin(b, m.Value)
	}
	return appendMessageFields(appendMapHeader(b, 1+messageFieldCount(m)), m)
}

func messageFieldCount(m *Message) int {
	n := 0
	if m.Key != nil {
		n++
	}
	if len(m.Headers) > 0 {
		n++
	}
	if !m.Timestamp.IsZero() {
		n++
	}
	if m.Partition != nil {
		n++
	}
	return n
}

// appendMessageFields writes value and the optional fields (no map header).
func appendMessageFields(b []byte, m *Message) []byte {
	b = appendBytesOrNil(appendStr(b, "value"), m.Value)
	if m.Key != nil {
		b = appendBin(appendStr(b, "key"), m.Key)
	}
	if len(m.Headers) > 0 {
		b = appendArrayHeader(appendStr(b, "headers"), len(m.Headers))
		for _, h := range m.Headers {
			b = appendArrayHeader(b, 2)
			b = appendStr(b, h.Key)
			b = appendBytesOrNil(b, h.Value)
		}
	}
	if !m.Timestamp.IsZero() {
		b = appendInt(appendStr(b, "timestamp"), m.Timestamp.UnixMilli())
	}
	if m.Partition != nil {
		b = appendInt(appendStr(b, "partition"), int64(*m.Partition))
	}
	return b
}

// producePrefix is the frame of a batch up to and including the messages
// array header; the encoded elements follow it.
func (c *Client) producePrefix(id uint64, it *outItem) []byte {
	fields := 3
	if c.cfg.cluster != "" {
		fields++
	}
	if c.cfg.partitioner != "" {
		fields++
	}
	b := frameStart(64 + len(it.topic) + len(c.cfg.cluster) + len(c.cfg.partitioner))
	b = appendArrayHeader(b, 3)
	b = appendUint(b, id)
	b = appendStr(b, "produce")
	b = appendMapHeader(b, fields)
	if c.cfg.cluster != "" {
		b = appendStr(appendStr(b, "cluster"), c.cfg.cluster)
	}
	b = appendStr(appendStr(b, "topic"), it.topic)
	b = appendStr(appendStr(b, "ack"), string(it.ack))
	if c.cfg.partitioner != "" {
		b = appendStr(appendStr(b, "partitioner"), c.cfg.partitioner)
	}
	b = appendArrayHeader(appendStr(b, "messages"), it.n)
	return finishFrame(b, len(it.elems))
}

// singleProduceArgs encodes the args of a one-message wait-mode produce
// (the args map is the message).
func (c *Client) singleProduceArgs(topic string, m *Message) []byte {
	fields := 3 + messageFieldCount(m)
	if c.cfg.cluster != "" {
		fields++
	}
	if c.cfg.partitioner != "" {
		fields++
	}
	b := make([]byte, 0, 64+msgSize(m)+len(topic))
	b = appendMapHeader(b, fields)
	if c.cfg.cluster != "" {
		b = appendStr(appendStr(b, "cluster"), c.cfg.cluster)
	}
	b = appendStr(appendStr(b, "topic"), topic)
	b = appendStr(appendStr(b, "ack"), "wait")
	if c.cfg.partitioner != "" {
		b = appendStr(appendStr(b, "partitioner"), c.cfg.partitioner)
	}
	return appendMessageFields(b, m)
}

// ---------------------------------------------------------------- produce

func (c *Client) checkAck() error {
	if c.cfg.ack != AckReport && c.cfg.ack != AckNone {
		return invalidArg("ack: %q is not an async mode (use AckReport or AckNone)", c.cfg.ack)
	}
	return nil
}

// Produce enqueues one message for asynchronous delivery and returns its
// sequence number (0 with AckNone). The message goes into the topic's local
// batch; its DeliveryReport (same Seq) arrives later on Reports, the
// delivery callback or PollReports. Produce blocks only while the client
// is at its limits (WithMaxOutstanding, or batches waiting to be sent); ctx
// bounds that wait. Messages of one goroutine to one topic keep their order.
func (c *Client) Produce(ctx context.Context, topic string, msg Message) (uint64, error) {
	if err := c.checkAck(); err != nil {
		return 0, err
	}
	size := msgSize(&msg)
	c.mu.Lock()
	defer c.mu.Unlock()
	if size > c.maxElem {
		return 0, tooLarge("message of about %d bytes does not fit max_frame %d", size, c.maxPayload())
	}
	if err := c.waitRoomLocked(ctx); err != nil {
		return 0, err
	}
	b := c.batches[topic]
	if b != nil && b.n > 0 && len(b.buf)+size > c.batchBytes {
		c.detachLocked(b)
		b = nil
	}
	if b == nil {
		b = &openBatch{topic: topic, buf: make([]byte, 0, min(c.batchBytes+size, 64<<10)), t0: time.Now()}
		c.batches[topic] = b
		if c.cfg.linger > 0 {
			c.kickLinger()
		}
	}
	b.buf = appendMessage(b.buf, &msg)
	var seq uint64
	if c.cfg.ack == AckReport {
		seq = c.nextSeq
		c.nextSeq++
		b.cs.add(b.n, seq)
	}
	b.n++
	if b.n >= c.batchN || len(b.buf) >= c.batchBytes || c.cfg.linger <= 0 {
		c.detachLocked(b)
		c.pumpLocked(false)
	}
	return seq, nil
}

// ProduceBatch enqueues msgs for asynchronous delivery, like Produce, and
// returns the first sequence number: the messages get first ..
// first+len(msgs)-1 (0 with AckNone). They are sent at once, as few
// requests as the limits allow.
func (c *Client) ProduceBatch(ctx context.Context, topic string, msgs []Message) (uint64, error) {
	if err := c.checkAck(); err != nil {
		return 0, err
	}
	if len(msgs) == 0 {
		return 0, nil
	}
	c.mu.Lock()
	batchN, batchBytes, maxElem := c.batchN, c.batchBytes, c.maxElem
	c.mu.Unlock()
	// encode outside the lock: elements do not depend on the numbering
	var items []*outItem
	var cur *outItem
	for i := range msgs {
		m := &msgs[i]
		size := msgSize(m)
		if size > maxElem {
			return 0, tooLarge("message %d of about %d bytes does not fit max_frame", i, size)
		}
		if cur != nil && (cur.n >= batchN || (cur.n > 0 && len(cur.elems)+size > batchBytes)) {
			items = append(items, cur)
			cur = nil
		}
		if cur == nil {
			cur = &outItem{topic: topic, ack: c.cfg.ack, elems: make([]byte, 0, min(batchBytes+size, (len(msgs)-i)*size))}
		}
		cur.elems = appendMessage(cur.elems, m)
		cur.n++
	}
	items = append(items, cur)

	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.waitRoomLocked(ctx); err != nil {
		return 0, err
	}
	if b := c.batches[topic]; b != nil {
		c.detachLocked(b) // keeps this goroutine's order on the topic
	}
	var first uint64
	if c.cfg.ack == AckReport {
		first = c.nextSeq
		c.nextSeq += uint64(len(msgs))
	}
	seq := first
	for _, it := range items {
		if c.cfg.ack == AckReport {
			it.cs.start = seq
			seq += uint64(it.n)
		}
		c.outq = append(c.outq, it)
		c.outqMsgs += it.n
	}
	c.pumpLocked(false)
	return first, nil
}

// ProduceSync produces one message and waits until Kafka acknowledged it
// (ack "wait"); a delivery failure is returned as a *KafkaError. If ctx ends
// first the message may still be delivered.
func (c *Client) ProduceSync(ctx context.Context, topic string, msg Message) (RecordMetadata, error) {
	args := c.singleProduceArgs(topic, &msg)
	c.mu.Lock()
	if err := c.deadErrLocked(); err != nil {
		c.mu.Unlock()
		return RecordMetadata{}, err
	}
	c.nextID++
	id := c.nextID
	frame := encodeRequest(id, "produce", args)
	if len(frame)-4 > c.maxPayload() {
		c.mu.Unlock()
		return RecordMetadata{}, tooLarge("message of %d bytes does not fit max_frame %d", len(frame)-4, c.maxPayload())
	}
	r := &request{kind: kindCall, ch: make(chan response, 1)}
	c.pending[id] = r
	if b := c.batches[topic]; b != nil {
		c.detachLocked(b) // sent before this message
	}
	it := &outItem{topic: topic, frame: frame}
	c.outq = append(c.outq, it)
	c.pumpLocked(false)
	c.mu.Unlock()

	var resp response
	select {
	case resp = <-r.ch:
	case <-ctx.Done():
		c.mu.Lock()
		if !it.sent {
			it.cancelled = true
		}
		delete(c.pending, id)
		c.mu.Unlock()
		select {
		case resp = <-r.ch:
		default:
			return RecordMetadata{}, ctx.Err()
		}
	}
	if resp.err != nil {
		return RecordMetadata{}, resp.err
	}
	results, err := parseWaitResults(resp.res, topic)
	if err != nil {
		return RecordMetadata{}, err
	}
	if len(results) != 1 {
		return RecordMetadata{}, protocolErr("wait-mode produce of one message got %d results", len(results))
	}
	return results[0].md, results[0].err
}

type waitResult struct {
	md  RecordMetadata
	err error
}

// parseWaitResults reads {count, results: [[partition, offset, error], ...]}.
func parseWaitResults(res []byte, topic string) ([]waitResult, error) {
	d := decoder{b: res}
	var out []waitResult
	err := d.eachMapKey(func(k []byte) error {
		if string(k) != "results" {
			return d.skip()
		}
		n, err := d.readArrayLen()
		if err != nil {
			return err
		}
		out = make([]waitResult, n)
		for i := range out {
			if m, err := d.readArrayLen(); err != nil || m != 3 {
				return &decodeError{"result is not [partition, offset, error]"}
			}
			p, err := d.readInt()
			if err != nil {
				return err
			}
			off, err := d.readInt()
			if err != nil {
				return err
			}
			e, err := d.readErrorOrNil()
			if err != nil {
				return err
			}
			out[i] = waitResult{RecordMetadata{topic, int32(p), off}, e}
		}
		return nil
	})
	if err != nil {
		return nil, protocolErr("produce result: %v", err)
	}
	return out, nil
}

// waitRoomLocked blocks while the client is at its limits.
func (c *Client) waitRoomLocked(ctx context.Context) error {
	for {
		if err := c.deadErrLocked(); err != nil {
			return err
		}
		if c.outqMsgs < 4*c.batchN &&
			(c.cfg.ack != AckReport || c.nextSeq-1-c.handed < uint64(c.cfg.maxOutstanding)) {
			return nil
		}
		if err := c.waitLocked(ctx); err != nil {
			return err
		}
	}
}

func (c *Client) detachLocked(b *openBatch) {
	delete(c.batches, b.topic)
	if b.n == 0 {
		return
	}
	c.outq = append(c.outq, &outItem{topic: b.topic, ack: c.cfg.ack, elems: b.buf, n: b.n, cs: b.cs})
	c.outqMsgs += b.n
}

func (c *Client) detachAllLocked() {
	for _, b := range c.batches {
		c.detachLocked(b)
	}
}

func (c *Client) popOutqLocked() *outItem {
	it := c.outq[c.outqHead]
	c.outq[c.outqHead] = nil
	c.outqHead++
	c.outqMsgs -= it.n
	if c.outqHead == len(c.outq) {
		c.outq = c.outq[:0]
		c.outqHead = 0
	}
	return it
}

// pumpLocked sends queued requests in order while the limits allow: the
// daemon's max_pending (uncollected report-mode messages, SPEC 5.3) and the
// write queue. force ignores the write queue limit (Close), never
// max_pending: a produce the daemon holds for max_pending blocks the
// connection's later requests, so the reports making room could not be
// collected any more.
func (c *Client) pumpLocked(force bool) {
	sent := false
	for c.outqHead < len(c.outq) {
		it := c.outq[c.outqHead]
		if it.cancelled {
			c.popOutqLocked()
			continue
		}
		if !force && c.wqBytes >= writeQueueLimit {
			break
		}
		if it.frame == nil && it.ack == AckReport && c.sentRep > c.collected &&
			c.sentRep-c.collected+uint64(it.n) > c.maxPending {
			break
		}
		c.popOutqLocked()
		it.sent = true
		sent = true
		if it.frame != nil {
			c.enqueueLocked(it.frame)
			continue
		}
		c.nextID++
		id := c.nextID
		c.pending[id] = &request{kind: kindBatch, item: it}
		c.enqueueLocked(c.producePrefix(id, it), it.elems)
		if it.ack == AckReport {
			c.sentRep += uint64(it.n)
		}
	}
	c.armPollLocked()
	if sent {
		c.broadcastLocked()
	}
}

// ---------------------------------------------------------------- reports

func (c *Client) addRunLocked(r clientRun) {
	if r.count <= 0 {
		return
	}
	c.runs = append(c.runs, r)
	c.runsMsgs += r.count
}

// itemRunLocked gives all messages of a report-mode item one outcome.
func (c *Client) itemRunLocked(it *outItem, err error) {
	c.addRunLocked(it.cs.run(0, it.n, it.topic, -1, -1, err))
}

// batchDoneLocked applies the response to an async produce batch.
func (c *Client) batchDoneLocked(it *outItem, rerr error, res []byte) error {
	if rerr != nil {
		if it.ack == AckReport {
			c.itemRunLocked(it, rerr) // nothing of it was enqueued
			c.collected += uint64(it.n)
			c.reportsChangedLocked()
		} else {
			c.asyncErrors++
			c.lastAsyncErr = rerr
		}
		return nil
	}
	if it.ack != AckReport {
		return nil
	}
	d := decoder{b: res}
	var seq uint64
	var haveSeq bool
	var reports []byte
	err := d.eachMapKey(func(k []byte) error {
		var err error
		switch string(k) {
		case "seq":
			seq, err = d.readUint()
			haveSeq = true
		case "reports":
			reports, err = d.raw()
		default:
			err = d.skip()
		}
		return err
	})
	if err == nil && !haveSeq {
		err = &decodeError{"no seq"}
	}
	if err != nil {
		return &connError{cause: protocolErr("produce result: %v", err)}
	}
	c.segs.add(seq, it.n, it.cs, it.topic, c.addRunLocked)
	if err := c.runsLocked(reports); err != nil {
		return err
	}
	c.reportsChangedLocked()
	return nil
}

// runsLocked applies the runs of a `reports` field (raw msgpack, may be nil).
func (c *Client) runsLocked(raw []byte) error {
	if raw == nil {
		return nil
	}
	d := decoder{b: raw}
	if d.tryNil() {
		return nil
	}
	n, err := d.readArrayLen()
	if err != nil {
		return &connError{cause: protocolErr("reports: %v", err)}
	}
	for i := 0; i < n; i++ {
		r, err := readRun(&d)
		if err != nil {
			return &connError{cause: protocolErr("reports[%d]: %v", i, err)}
		}
		c.collected += uint64(r.count)
		c.segs.translate(r, c.addRunLocked)
	}
	return nil
}

func readRun(d *decoder) (wireRun, error) {
	var r wireRun
	if n, err := d.readArrayLen(); err != nil || n != 5 {
		return r, &decodeError{"run is not [seq, count, partition, offset, error]"}
	}
	var err error
	var v int64
	if r.seq, err = d.readUint(); err != nil {
		return r, err
	}
	if v, err = d.readInt(); err != nil || v < 0 {
		return r, &decodeError{"bad run count"}
	}
	r.count = int(v)
	if v, err = d.readInt(); err != nil {
		return r, err
	}
	r.partition = int32(v)
	if r.offset, err = d.readInt(); err != nil {
		return r, err
	}
	if r.offset < 0 {
		r.offset = -1
	}
	r.err, err = d.readErrorOrNil()
	return r, err
}

// reportsChangedLocked: outcomes arrived, so there may be room under
// max_pending, waiters to wake and reports to dispatch.
func (c *Client) reportsChangedLocked() {
	c.pumpLocked(false)
	c.broadcastLocked()
	c.kickReports()
}

// armPollLocked keeps one poll_reports parked at the daemon while
// report-mode messages are without a collected outcome.
func (c *Client) armPollLocked() {
	if c.pollOut || c.dead != nil || c.sentRep <= c.collected {
		return
	}
	if !c.pollRetryAt.IsZero() {
		if time.Now().Before(c.pollRetryAt) {
			return
		}
		c.pollRetryAt = time.Time{}
	}
	c.nextID++
	id := c.nextID
	c.pending[id] = &request{kind: kindPoll}
	c.pollOut = true
	args := appendMapHeader(nil, 2)
	args = appendUint(appendStr(args, "max"), pollMax)
	args = appendUint(appendStr(args, "timeout_ms"), pollParkMs)
	c.enqueueLocked(encodeRequest(id, "poll_reports", args))
}

func (c *Client) pollDoneLocked(rerr error, res []byte) error {
	c.pollOut = false
	if rerr != nil {
		// should not happen; try again a little later (the linger loop wakes for it)
		c.asyncErrors++
		c.lastAsyncErr = rerr
		c.pollRetryAt = time.Now().Add(200 * time.Millisecond)
		c.kickLinger()
		return nil
	}
	d := decoder{b: res}
	var reports []byte
	err := d.eachMapKey(func(k []byte) error {
		var err error
		switch string(k) {
		case "reports":
			reports, err = d.raw()
		case "pending":
			c.daemonPending, err = d.readUint()
		default:
			err = d.skip()
		}
		return err
	})
	if err != nil {
		return &connError{cause: protocolErr("poll_reports result: %v", err)}
	}
	if err := c.runsLocked(reports); err != nil {
		return err
	}
	c.reportsChangedLocked()
	return nil
}

// batchLostLocked: a sent batch whose response will never come.
func (c *Client) batchLostLocked(it *outItem, err error) {
	if it.ack == AckReport {
		c.itemRunLocked(it, err)
	}
}

// producerLostLocked gives every report-mode message without an outcome a
// report with err (the connection is gone).
func (c *Client) producerLostLocked(err error) {
	for c.outqHead < len(c.outq) {
		it := c.popOutqLocked()
		if !it.cancelled && it.frame == nil && it.ack == AckReport {
			c.itemRunLocked(it, err)
		}
	}
	for _, b := range c.batches {
		if b.n > 0 && c.cfg.ack == AckReport {
			c.addRunLocked(b.cs.run(0, b.n, b.topic, -1, -1, err))
		}
	}
	clear(c.batches)
	c.segs.lost(err, c.addRunLocked)
	c.sentRep = 0
	c.collected = 0
}

// takeRunsLocked removes up to maxMsgs reports' worth of runs.
func (c *Client) takeRunsLocked(maxMsgs int) []clientRun {
	var out []clientRun
	for c.runsHead < len(c.runs) && maxMsgs > 0 {
		r := &c.runs[c.runsHead]
		if r.count > maxMsgs {
			part := *r
			part.count = maxMsgs
			if part.seqs != nil {
				part.seqs = part.seqs[:maxMsgs:maxMsgs]
			}
			out = append(out, part)
			r.drop(maxMsgs)
			c.runsMsgs -= maxMsgs
			break
		}
		out = append(out, *r)
		maxMsgs -= r.count
		c.runsMsgs -= r.count
		c.runs[c.runsHead] = clientRun{}
		c.runsHead++
	}
	if c.runsHead == len(c.runs) {
		c.runs = c.runs[:0]
		c.runsHead = 0
	}
	return out
}

// putBackRunsLocked returns runs to the front of the queue.
func (c *Client) putBackRunsLocked(runs []clientRun) {
	if len(runs) == 0 {
		return
	}
	rest := c.runs[c.runsHead:]
	nr := make([]clientRun, 0, len(runs)+len(rest))
	nr = append(nr, runs...)
	nr = append(nr, rest...)
	c.runs = nr
	c.runsHead = 0
	for _, r := range runs {
		c.runsMsgs += r.count
	}
}

func (c *Client) handedLocked(n int) {
	if n > 0 {
		c.handed += uint64(n)
		c.broadcastLocked()
	}
}

// dispatchLoop hands reports to the callback and/or the channel.
func (c *Client) dispatchLoop() {
	defer c.wg.Done()
	cb := c.cfg.callback
	if c.cfg.polled {
		cb = nil
	}
	for {
		select {
		case <-c.reportKick:
		case <-c.closeCh:
			c.finalDispatch(cb)
			return
		}
		for {
			c.mu.Lock()
			runs := c.takeRunsLocked(1 << 16)
			c.mu.Unlock()
			if len(runs) == 0 {
				break
			}
			handed := 0
			for i := range runs {
				r := &runs[i]
				for k := 0; k < r.count; k++ {
					rep := r.report(k)
					if cb != nil {
						cb(rep)
					}
					if c.reports != nil {
						select {
						case c.reports <- rep:
						case <-c.closeCh:
							// closing while the app does not read: keep the rest
							r.drop(k)
							c.mu.Lock()
							c.handedLocked(handed)
							c.putBackRunsLocked(runs[i:])
							c.mu.Unlock()
							c.finalDispatch(nil)
							return
						}
					}
					handed++
					if handed >= 1024 {
						c.mu.Lock()
						c.handedLocked(handed)
						c.mu.Unlock()
						handed = 0
					}
				}
			}
			c.mu.Lock()
			c.handedLocked(handed)
			c.mu.Unlock()
		}
	}
}

// finalDispatch runs once the client is closed: the callback gets every
// remaining report, the channel what fits its buffer; then the channel is
// closed. What did not fit stays for PollReports.
func (c *Client) finalDispatch(cb func(DeliveryReport)) {
	c.mu.Lock()
	runs := c.takeRunsLocked(1 << 62)
	c.mu.Unlock()
	handed := 0
	var keep []clientRun
	for i := 0; i < len(runs) && keep == nil; i++ {
		r := &runs[i]
		for k := 0; k < r.count; k++ {
			rep := r.report(k)
			if cb != nil {
				cb(rep)
			}
			if c.reports != nil && cb == nil {
				select {
				case c.reports <- rep:
				default:
					r.drop(k)
					keep = runs[i:]
				}
				if keep != nil {
					break
				}
			} else if c.reports != nil {
				select {
				case c.reports <- rep:
				default:
				}
			}
			handed++
		}
	}
	c.mu.Lock()
	c.handedLocked(handed)
	c.putBackRunsLocked(keep)
	c.mu.Unlock()
	if c.reports != nil {
		close(c.reports)
	}
}

// PollReports returns up to maxReports delivery reports (<= 0: 65536), waiting
// up to timeout for the first one. Meant for WithPolledReports; with the
// channel or callback on it only gets reports they have not taken yet.
// After Close it returns what the closed channel could not hold, then an
// error matching ErrClosed.
func (c *Client) PollReports(ctx context.Context, maxReports int, timeout time.Duration) ([]DeliveryReport, error) {
	if maxReports <= 0 {
		maxReports = pollMax
	}
	wctx := ctx
	if timeout > 0 {
		var cancel context.CancelFunc
		wctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.runsMsgs == 0 {
		if err := c.deadErrLocked(); err != nil {
			return nil, err
		}
		if timeout <= 0 {
			return nil, nil
		}
		if err := c.waitLocked(wctx); err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, nil
		}
	}
	runs := c.takeRunsLocked(maxReports)
	out := make([]DeliveryReport, 0, min(maxReports, c.runsMsgs+maxReports, 4096))
	for i := range runs {
		for k := 0; k < runs[i].count; k++ {
			out = append(out, runs[i].report(k))
		}
	}
	c.handedLocked(len(out))
	return out, nil
}

// unfinishedLocked counts report-mode messages numbered <= target whose
// outcome has not reached the client.
func (c *Client) unfinishedLocked(target uint64) int {
	n := 0
	for i := c.outqHead; i < len(c.outq); i++ {
		if it := c.outq[i]; it.frame == nil && !it.cancelled && it.ack == AckReport && it.cs.first() <= target {
			n += it.n
		}
	}
	for _, b := range c.batches {
		if b.n > 0 && c.cfg.ack == AckReport && b.cs.first() <= target {
			n += b.n
		}
	}
	for _, r := range c.pending {
		if r.kind == kindBatch && r.item.ack == AckReport && r.item.cs.first() <= target {
			n += r.item.n
		}
	}
	return n + c.segs.unreportedUpTo(target)
}

// Flush sends every locally batched message and waits until each message
// produced before the call has an outcome, with its report received by the
// client (reports then reach the channel or callback asynchronously). It
// returns how many still had none when ctx ended (0 on success).
func (c *Client) Flush(ctx context.Context) (int, error) {
	c.mu.Lock()
	if err := c.deadErrLocked(); err != nil {
		c.mu.Unlock()
		return 0, err
	}
	c.detachAllLocked()
	c.pumpLocked(false)
	target := c.nextSeq - 1
	last := c.outq[c.outqHead:]
	var lastItem *outItem
	if len(last) > 0 {
		lastItem = last[len(last)-1]
	}
	for lastItem != nil && !lastItem.sent && !lastItem.cancelled {
		if err := c.waitLocked(ctx); err != nil {
			n := c.unfinishedLocked(target)
			c.mu.Unlock()
			return n, err
		}
		if err := c.deadErrLocked(); err != nil {
			c.mu.Unlock()
			return 0, err
		}
	}
	c.mu.Unlock()

	for {
		res, err := c.call(ctx, "flush", omap{{"timeout_ms", timeoutMs(ctx, 10000, 3600000)}})
		if err != nil {
			c.mu.Lock()
			n := c.unfinishedLocked(target)
			c.mu.Unlock()
			return n, err
		}
		v, err := decodeValue(res, false)
		if err != nil {
			return 0, protocolErr("flush result: %v", err)
		}
		remaining, _ := asInt(mapGet(v, "remaining"))
		if remaining == 0 {
			break
		}
		if ctx.Err() != nil {
			return int(remaining), ctx.Err()
		}
		if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
			return int(remaining), context.DeadlineExceeded
		}
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		n := c.unfinishedLocked(target)
		if n == 0 {
			return 0, nil
		}
		if err := c.deadErrLocked(); err != nil {
			return 0, nil // outcomes were given as ErrConnectionLost reports
		}
		if err := c.waitLocked(ctx); err != nil {
			return c.unfinishedLocked(target), err
		}
	}
}

// InFlight is the number of report-mode messages produced whose report has
// not been handed to the application yet.
func (c *Client) InFlight() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return int(c.nextSeq - 1 - c.handed)
}

// AsyncErrors returns how many AckNone batches the daemon rejected and the
// last such error (report-mode failures arrive as reports instead).
func (c *Client) AsyncErrors() (uint64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.asyncErrors, c.lastAsyncErr
}

// lingerLoop sends batches that reached their linger time and retries a
// failed poll_reports.
func (c *Client) lingerLoop() {
	defer c.wg.Done()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		c.mu.Lock()
		if c.dead != nil || c.closing {
			c.mu.Unlock()
			return
		}
		now := time.Now()
		var next time.Time
		due := false
		for _, b := range c.batches {
			at := b.t0.Add(c.cfg.linger)
			if !now.Before(at) {
				c.detachLocked(b)
				due = true
			} else if next.IsZero() || at.Before(next) {
				next = at
			}
		}
		if due {
			c.pumpLocked(false)
		}
		if !c.pollRetryAt.IsZero() {
			if !now.Before(c.pollRetryAt) {
				c.armPollLocked()
			} else if next.IsZero() || c.pollRetryAt.Before(next) {
				next = c.pollRetryAt
			}
		}
		c.mu.Unlock()
		var tc <-chan time.Time
		if !next.IsZero() {
			timer.Reset(time.Until(next))
			tc = timer.C
		}
		select {
		case <-c.lingerKick:
		case <-tc:
		case <-c.deadCh:
		case <-c.closeCh:
		}
		if tc != nil && !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

func (c *Client) String() string {
	return fmt.Sprintf("kafkad.Client(%s)", c.cfg.socketPath())
}
