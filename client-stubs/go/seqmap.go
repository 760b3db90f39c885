package kafkad

import "sort"

// Sequence numbers of delivery reports.
//
// The client numbers report-mode messages itself when Produce accepts them,
// so it can return the number at once. The daemon numbers the messages of
// each accepted request (report and wait mode share its counter, rejected
// requests take none) and says which numbers in the result (`seq`). A
// segment maps one accepted request's daemon numbers to the client's, and
// every incoming run [seq, count, partition, offset, error] is rewritten
// through the segments. A run that arrives before the result defining its
// segment (possible for a request the daemon held) is parked until then.

// wireRun is a run as the daemon numbers it.
type wireRun struct {
	seq       uint64
	count     int
	partition int32
	offset    int64
	err       error
}

// clientRun is a run in client numbers: either seq..seq+count-1, or the
// listed seqs (a batch whose messages were not numbered consecutively).
type clientRun struct {
	seq       uint64
	seqs      []uint64
	count     int
	partition int32
	offset    int64
	err       error
	topic     string
}

func (r *clientRun) seqAt(k int) uint64 {
	if r.seqs != nil {
		return r.seqs[k]
	}
	return r.seq + uint64(k)
}

func (r *clientRun) report(k int) DeliveryReport {
	off := r.offset
	if off >= 0 {
		off += int64(k)
	} else {
		off = -1
	}
	return DeliveryReport{Seq: r.seqAt(k), Topic: r.topic, Partition: r.partition, Offset: off, Err: r.err}
}

// drop removes the first k reports of the run.
func (r *clientRun) drop(k int) {
	if r.seqs != nil {
		r.seqs = r.seqs[k:]
	} else {
		r.seq += uint64(k)
	}
	if r.offset >= 0 {
		r.offset += int64(k)
	}
	r.count -= k
}

// clientSeqs is the numbering of one request's messages.
type clientSeqs struct {
	start uint64   // first seq, when seqs is nil
	seqs  []uint64 // otherwise, one per message
}

func (s *clientSeqs) first() uint64 {
	if s.seqs != nil {
		return s.seqs[0]
	}
	return s.start
}

// add numbers the n-th message (0-based) of a batch with seq.
func (s *clientSeqs) add(n int, seq uint64) {
	if n == 0 {
		s.start = seq
		return
	}
	if s.seqs == nil {
		if seq == s.start+uint64(n) {
			return
		}
		s.seqs = make([]uint64, n, 2*n)
		for i := range s.seqs {
			s.seqs[i] = s.start + uint64(i)
		}
	}
	s.seqs = append(s.seqs, seq)
}

// run returns the client run for messages [pos, pos+count) of the request.
func (s *clientSeqs) run(pos, count int, topic string, partition int32, offset int64, err error) clientRun {
	r := clientRun{count: count, partition: partition, offset: offset, err: err, topic: topic}
	if s.seqs != nil {
		r.seqs = s.seqs[pos : pos+count : pos+count]
	} else {
		r.seq = s.start + uint64(pos)
	}
	return r
}

type segment struct {
	dstart uint64
	n      int
	cs     clientSeqs
	topic  string
	left   int
	done   []uint64 // bitmap of reported positions
}

// mark records positions [pos, pos+count) as reported.
func (s *segment) mark(pos, count int) {
	for p := pos; p < pos+count; p++ {
		w, bit := p>>6, uint64(1)<<(p&63)
		if s.done[w]&bit == 0 {
			s.done[w] |= bit
			s.left--
		}
	}
}

// unreported calls fn for each maximal range of unreported positions.
func (s *segment) unreported(fn func(pos, count int)) {
	start := -1
	for p := 0; p <= s.n; p++ {
		isDone := p == s.n || s.done[p>>6]&(uint64(1)<<(p&63)) != 0
		if !isDone && start < 0 {
			start = p
		} else if isDone && start >= 0 {
			fn(start, p-start)
			start = -1
		}
	}
}

type seqMap struct {
	segs   []*segment // sorted by dstart
	parked []wireRun
}

// add records an accepted request; parked runs it covers are translated.
func (m *seqMap) add(dstart uint64, n int, cs clientSeqs, topic string, out func(clientRun)) {
	if n <= 0 {
		return
	}
	s := &segment{dstart: dstart, n: n, cs: cs, topic: topic, left: n, done: make([]uint64, (n+63)/64)}
	i := sort.Search(len(m.segs), func(i int) bool { return m.segs[i].dstart > dstart })
	m.segs = append(m.segs, nil)
	copy(m.segs[i+1:], m.segs[i:])
	m.segs[i] = s
	if len(m.parked) > 0 {
		parked := m.parked
		m.parked = nil
		for _, r := range parked {
			m.translate(r, out)
		}
	}
}

// translate rewrites a daemon run into client runs (passed to out).
func (m *seqMap) translate(r wireRun, out func(clientRun)) {
	for r.count > 0 {
		i := sort.Search(len(m.segs), func(i int) bool { return m.segs[i].dstart > r.seq }) - 1
		take := r.count
		if i >= 0 && r.seq < m.segs[i].dstart+uint64(m.segs[i].n) {
			s := m.segs[i]
			pos := int(r.seq - s.dstart)
			take = min(take, s.n-pos)
			out(s.cs.run(pos, take, s.topic, r.partition, r.offset, r.err))
			s.mark(pos, take)
			if s.left <= 0 {
				m.segs = append(m.segs[:i], m.segs[i+1:]...)
			}
		} else {
			// no segment yet: park up to where the next known one starts
			if i+1 < len(m.segs) {
				take = int(min(uint64(take), m.segs[i+1].dstart-r.seq))
			}
			m.parked = append(m.parked, wireRun{r.seq, take, r.partition, r.offset, r.err})
		}
		r.seq += uint64(take)
		r.count -= take
		if r.offset >= 0 {
			r.offset += int64(take)
		}
	}
}

// lost gives every unreported message of every segment a run with err and
// forgets everything.
func (m *seqMap) lost(err error, out func(clientRun)) {
	for _, s := range m.segs {
		s.unreported(func(pos, count int) {
			out(s.cs.run(pos, count, s.topic, -1, -1, err))
		})
	}
	m.segs = nil
	m.parked = nil
}

// unreportedUpTo counts unreported messages of segments whose first client
// seq is <= target.
func (m *seqMap) unreportedUpTo(target uint64) int {
	n := 0
	for _, s := range m.segs {
		if s.cs.first() <= target {
			n += s.left
		}
	}
	return n
}
