package kafkad

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

type vector struct {
	Name  string
	Kind  string
	Value any // decoded with ordered maps and $bin as []byte
	Bytes []byte
}

func vectorsDir() string { return filepath.Join("..", "..", "protocol", "vectors") }

func loadVectors(t testing.TB) []vector {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(vectorsDir(), "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no protocol vectors in %s (err %v)", vectorsDir(), err)
	}
	var out []vector
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		top, err := parseOrderedJSON(raw)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		m := top.(omap)
		get := func(k string) any { v, _ := m.Get(k); return v }
		b, err := hex.DecodeString(get("msgpack_hex").(string))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out = append(out, vector{Name: get("name").(string), Kind: get("kind").(string), Value: get("value"), Bytes: b})
	}
	return out
}

// parseOrderedJSON decodes JSON keeping object key order (as omap), turning
// {"$bin": hex} into []byte and integers into int64 (uint64 above MaxInt64).
func parseOrderedJSON(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	v, err := jsonValue(dec)
	if err != nil {
		return nil, err
	}
	return v, nil
}

func jsonValue(dec *json.Decoder) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch x := tok.(type) {
	case json.Delim:
		switch x {
		case '[':
			l := []any{}
			for dec.More() {
				v, err := jsonValue(dec)
				if err != nil {
					return nil, err
				}
				l = append(l, v)
			}
			_, err := dec.Token()
			return l, err
		case '{':
			m := omap{}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, err
				}
				v, err := jsonValue(dec)
				if err != nil {
					return nil, err
				}
				m = append(m, mapEntry{kt.(string), v})
			}
			if _, err := dec.Token(); err != nil {
				return nil, err
			}
			if len(m) == 1 && m[0].Key == "$bin" {
				return hex.DecodeString(m[0].Value.(string))
			}
			return m, nil
		}
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i, nil
		}
		var u uint64
		if _, err := fmt.Sscan(string(x), &u); err == nil {
			return u, nil
		}
		return x.Float64()
	case string, bool, nil:
		return x, nil
	}
	return nil, fmt.Errorf("unexpected JSON token %v", tok)
}

// TestVectorsReplay: every protocol vector encodes to exactly its bytes and
// its bytes decode back to its value.
func TestVectorsReplay(t *testing.T) {
	for _, v := range loadVectors(t) {
		t.Run(v.Name, func(t *testing.T) {
			got, err := appendValue(nil, v.Value)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, v.Bytes) {
				t.Fatalf("encoding differs\n got  %x\n want %x", got, v.Bytes)
			}
			back, err := decodeValue(v.Bytes, true)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(back, v.Value) {
				t.Fatalf("decoding differs\n got  %#v\n want %#v", back, v.Value)
			}
			// every response vector parses as an envelope
			if v.Kind == "response" {
				if _, _, _, _, err := parseResponse(v.Bytes); err != nil {
					t.Fatalf("parseResponse: %v", err)
				}
			}
			// no proper prefix decodes (and none panics)
			for i := 0; i < len(v.Bytes); i++ {
				if _, err := decodeValue(v.Bytes[:i], true); err == nil {
					t.Fatalf("prefix of %d bytes decoded", i)
				}
			}
		})
	}
}

func vectorByName(t *testing.T, name string) vector {
	for _, v := range loadVectors(t) {
		if v.Name == name {
			return v
		}
	}
	t.Fatalf("no vector %s", name)
	return vector{}
}

func testClient(cfg config) *Client {
	c := &Client{cfg: cfg}
	c.producer.init(&c.cfg)
	return c
}

// TestVectorsClientEncoders: the client's own request builders (not just the
// generic encoder) produce the vectors' bytes.
func TestVectorsClientEncoders(t *testing.T) {
	frame := func(b []byte) []byte { return b[4:] }

	hello, _ := appendValue(nil, omap{{"version", 1}, {"client", "kafkad-python/0.1"}})
	if got, want := frame(encodeRequest(1, "hello", hello)), vectorByName(t, "hello_request").Bytes; !bytes.Equal(got, want) {
		t.Errorf("hello: %x != %x", got, want)
	}
	if got, want := frame(encodeRequest(4, "metadata", nil)), vectorByName(t, "metadata_request_all_topics").Bytes; !bytes.Equal(got, want) {
		t.Errorf("metadata: %x != %x", got, want)
	}

	batch := func(c *Client, id uint64, topic string, ack Ack, msgs ...Message) []byte {
		it := &outItem{topic: topic, ack: ack}
		for i := range msgs {
			it.elems = appendMessage(it.elems, &msgs[i])
			it.n++
		}
		f := c.producePrefix(id, it)
		if int(bytes2u32(f)) != len(f)-4+len(it.elems) {
			t.Fatalf("frame length %d wrong", bytes2u32(f))
		}
		return append(frame(f), it.elems...)
	}
	plain := testClient(defaultConfig())
	got := batch(plain, 6, "events", AckReport, Message{Value: []byte("m1")}, Message{Value: []byte("m2")}, Message{Value: []byte{0xff, 0xff, 0xff}})
	if want := vectorByName(t, "produce_batch_compact_request").Bytes; !bytes.Equal(got, want) {
		t.Errorf("compact batch:\n got  %x\n want %x", got, want)
	}
	got = batch(plain, 8, "logs", AckNone, Message{Value: []byte("a")}, Message{Value: []byte("b")})
	if want := vectorByName(t, "produce_none_request").Bytes; !bytes.Equal(got, want) {
		t.Errorf("none batch:\n got  %x\n want %x", got, want)
	}

	single := plain.singleProduceArgs("events", &Message{
		Value: []byte("hello"), Key: []byte("user-42"),
		Headers:   []Header{{"trace-id", []byte{0, 1, 2}}},
		Timestamp: time.UnixMilli(1700000000123),
	})
	if got, want := frame(encodeRequest(5, "produce", single)), vectorByName(t, "produce_single_wait_request").Bytes; !bytes.Equal(got, want) {
		t.Errorf("single wait:\n got  %x\n want %x", got, want)
	}

	// map form: same value (this client writes partition after timestamp,
	// the vector the other way round, so compare decoded, key order aside)
	cfg := defaultConfig()
	cfg.cluster = "main"
	cfg.partitioner = "pykafka_hashing"
	mc := testClient(cfg)
	got = batch(mc, 7, "events", AckReport,
		Message{Value: []byte("v1"), Key: []byte("bravo"), Headers: []Header{{"h1", []byte("x")}, {"h2", nil}}},
		Message{Value: []byte("compact-between-maps")},
		Message{Key: []byte("tombstone"), Partition: Int32(2), Timestamp: time.UnixMilli(1700000000000)},
	)
	gv, err := decodeValue(got, false)
	if err != nil {
		t.Fatal(err)
	}
	wv, _ := decodeValue(vectorByName(t, "produce_batch_map_form_request").Bytes, false)
	if !reflect.DeepEqual(gv, wv) {
		t.Errorf("map form:\n got  %#v\n want %#v", gv, wv)
	}
}

func bytes2u32(b []byte) uint32 {
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

// TestVectorsClientDecoders: the typed result parsers read the vectors.
func TestVectorsClientDecoders(t *testing.T) {
	resp := func(name string) (uint64, error, []byte) {
		id, _, rerr, res, err := parseResponse(vectorByName(t, name).Bytes)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return id, rerr, res
	}
	_, _, res := resp("hello_response")
	var h HelloInfo
	if err := h.parse(res); err != nil {
		t.Fatal(err)
	}
	want := HelloInfo{1, "kafkad/0.1.0", 16777216, 10000, 1000000, []string{"main", "analytics"}, "main"}
	if !reflect.DeepEqual(h, want) {
		t.Errorf("hello: %+v", h)
	}

	_, _, res = resp("produce_wait_response")
	wr, err := parseWaitResults(res, "events")
	if err != nil || len(wr) != 2 {
		t.Fatalf("wait results %v %v", wr, err)
	}
	if wr[0].err != nil || wr[0].md != (RecordMetadata{"events", 0, 42}) {
		t.Errorf("wait result 0: %+v", wr[0])
	}
	if !errors.Is(wr[1].err, ErrKafkaMsgTimedOut) || !IsRetriable(wr[1].err) {
		t.Errorf("wait result 1: %v", wr[1].err)
	}
	var ke *KafkaError
	if !errors.As(wr[1].err, &ke) || ke.RdKafkaCode() != -192 || ke.Name != "_MSG_TIMED_OUT" {
		t.Errorf("wait result 1 as KafkaError: %+v", ke)
	}

	_, _, res = resp("poll_reports_response_runs")
	d := decoder{b: res}
	var runs []wireRun
	var pending uint64
	err = d.eachMapKey(func(k []byte) error {
		switch string(k) {
		case "reports":
			n, err := d.readArrayLen()
			if err != nil {
				return err
			}
			for i := 0; i < n; i++ {
				r, err := readRun(&d)
				if err != nil {
					return err
				}
				runs = append(runs, r)
			}
			return nil
		case "pending":
			var err error
			pending, err = d.readUint()
			return err
		}
		return d.skip()
	})
	if err != nil || pending != 12 || len(runs) != 4 {
		t.Fatalf("runs %v pending %d err %v", runs, pending, err)
	}
	if runs[1].seq != 4 || runs[1].count != 5000 || runs[1].partition != 2 || runs[1].offset != 4294967296 {
		t.Errorf("run 1: %+v", runs[1])
	}
	if !errors.Is(runs[2].err, ErrKafkaUnknownTopic) || runs[2].offset != -1 || runs[2].partition != -1 {
		t.Errorf("run 2: %+v", runs[2])
	}

	for name, sentinel := range map[string]error{
		"error_response_too_large":          ErrTooLarge,
		"error_response_unknown_cluster":    ErrUnknownCluster,
		"error_response_bad_request_nil_id": ErrBadRequest,
		"bad_frame_error_frame":             ErrBadFrame,
	} {
		_, rerr, _ := resp(name)
		if !errors.Is(rerr, sentinel) {
			t.Errorf("%s: %v is not %v", name, rerr, sentinel)
		}
		var e *Error
		if !errors.As(rerr, &e) || e.Message == "" {
			t.Errorf("%s: no message in %v", name, rerr)
		}
	}

	_, _, res = resp("metadata_response")
	md, err := parseMetadata(res)
	if err != nil {
		t.Fatal(err)
	}
	if md.Cluster != "main" || len(md.Brokers) != 1 || md.Brokers[0] != (Broker{1, "kafka-1.local", 9092}) ||
		len(md.Topics) != 2 || len(md.Topics[0].Partitions) != 2 || md.Topics[0].Partitions[1].ID != 1 ||
		!reflect.DeepEqual(md.Topics[0].Partitions[0].ISRs, []int32{1}) ||
		!errors.Is(md.Topics[1].Err, ErrKafkaUnknownTopic) || md.Topics[0].Err != nil {
		t.Errorf("metadata: %+v", md)
	}

	_, _, res = resp("stats_response")
	st, err := parseStats(res)
	if err != nil {
		t.Fatal(err)
	}
	if st.Daemon["produced"] != 50000 || st.Daemon["uptime_ms"] != 123456 || st.Clusters["main"].Bootstrap != "kafka-1.local:9092" {
		t.Errorf("stats: %+v", st)
	}

	id, _, _ := resp("ping_response")
	if id != 2 {
		t.Errorf("ping id %d", id)
	}
}

// TestIntWidths pins the canonical (smallest) encodings.
func TestIntWidths(t *testing.T) {
	cases := []struct {
		v    int64
		want string
	}{
		{0, "00"}, {127, "7f"}, {128, "cc80"}, {255, "ccff"}, {256, "cd0100"}, {65535, "cdffff"},
		{65536, "ce00010000"}, {math.MaxUint32, "ceffffffff"}, {math.MaxUint32 + 1, "cf0000000100000000"},
		{-1, "ff"}, {-32, "e0"}, {-33, "d0df"}, {-128, "d080"}, {-129, "d1ff7f"}, {-32768, "d18000"},
		{-32769, "d2ffff7fff"}, {math.MinInt32, "d280000000"}, {math.MinInt32 - 1, "d3ffffffff7fffffff"},
		{math.MinInt64, "d38000000000000000"}, {math.MaxInt64, "cf7fffffffffffffff"},
	}
	for _, c := range cases {
		if got := hex.EncodeToString(appendInt(nil, c.v)); got != c.want {
			t.Errorf("%d: %s, want %s", c.v, got, c.want)
		}
		back, err := decodeValue(appendInt(nil, c.v), false)
		if err != nil || back != any(c.v) {
			t.Errorf("%d decodes to %#v %v", c.v, back, err)
		}
	}
	if got := hex.EncodeToString(appendUint(nil, math.MaxUint64)); got != "cfffffffffffffffff" {
		t.Errorf("MaxUint64: %s", got)
	}
	if v, _ := decodeValue(appendUint(nil, math.MaxUint64), false); v != any(uint64(math.MaxUint64)) {
		t.Errorf("MaxUint64 decodes to %#v", v)
	}
	lens := []struct {
		n                   int
		str, bin, arr, mapp string
	}{
		{0, "a0", "c400", "90", "80"},
		{15, "af", "c40f", "9f", "8f"},
		{16, "b0", "c410", "dc0010", "de0010"},
		{31, "bf", "c41f", "dc001f", "de001f"},
		{32, "d920", "c420", "dc0020", "de0020"},
		{255, "d9ff", "c4ff", "dc00ff", "de00ff"},
		{256, "da0100", "c50100", "dc0100", "de0100"},
		{65536, "db00010000", "c600010000", "dd00010000", "df00010000"},
	}
	for _, l := range lens {
		for name, got := range map[string][]byte{
			l.str: appendStrHeader(nil, l.n), l.bin: appendBinHeader(nil, l.n),
			l.arr: appendArrayHeader(nil, l.n), l.mapp: appendMapHeader(nil, l.n),
		} {
			if hex.EncodeToString(got) != name {
				t.Errorf("length %d: %x, want %s", l.n, got, name)
			}
		}
	}
}

// randValue makes a random value of at most about *budget bytes.
func randValue(r *rand.Rand, depth int, budget *int) any {
	k := r.Intn(12)
	if (depth > 4 || *budget <= 0) && k >= 6 {
		k = r.Intn(6)
	}
	*budget -= 10
	switch k {
	case 0:
		return nil
	case 1:
		return r.Intn(2) == 0
	case 2:
		return int64(r.Uint64() >> uint(r.Intn(64)))
	case 3:
		return -int64(r.Uint64()>>uint(1+r.Intn(63))) - 1
	case 4:
		return uint64(math.MaxInt64) + 1 + r.Uint64()>>1
	case 5:
		return r.NormFloat64()
	case 6:
		n := []int{0, 5, 31, 32, 300, 70000}[r.Intn(6)]
		*budget -= n
		return strings.Repeat("é", r.Intn(3)) + strings.Repeat("x", n)
	case 7:
		b := make([]byte, []int{0, 1, 255, 256, 70000}[r.Intn(5)])
		*budget -= len(b)
		r.Read(b)
		return b
	case 8:
		return extValue{Type: int8(r.Intn(128)), Data: make([]byte, []int{1, 2, 3, 4, 8, 16, 300}[r.Intn(7)])}
	case 9, 10:
		l := make([]any, []int{0, 3, 15, 16, 40}[r.Intn(5)])
		for i := range l {
			l[i] = randValue(r, depth+1, budget)
		}
		return l
	default:
		m := omap{}
		for i, n := 0, []int{0, 2, 15, 16, 20}[r.Intn(5)]; i < n; i++ {
			m = append(m, mapEntry{fmt.Sprintf("k%d", i), randValue(r, depth+1, budget)})
		}
		return m
	}
}

func TestCodecRoundTrip(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	for i := 0; i < 500; i++ {
		budget := 200000
		v := randValue(r, 0, &budget)
		b, err := appendValue(nil, v)
		if err != nil {
			t.Fatal(err)
		}
		back, err := decodeValue(b, true)
		if err != nil {
			t.Fatalf("decode %x: %v", b[:min(len(b), 64)], err)
		}
		if !reflect.DeepEqual(normalize(back), normalize(v)) {
			t.Fatalf("round trip of %#v gave %#v", v, back)
		}
		d := decoder{b: b}
		if err := d.skip(); err != nil || !d.done() {
			t.Fatalf("skip: %v at %d of %d", err, d.i, len(b))
		}
	}
}

// normalize makes values comparable with DeepEqual: byte slices by content
// (decoding aliases the input), floats by bits.
func normalize(v any) any {
	switch x := v.(type) {
	case float64:
		return fmt.Sprintf("float:%x", math.Float64bits(x)) // NaN == NaN
	case []byte:
		return "bin:" + hex.EncodeToString(x)
	case extValue:
		return fmt.Sprintf("ext%d:%x", x.Type, x.Data)
	case []any:
		out := make([]any, len(x))
		for i := range x {
			out[i] = normalize(x[i])
		}
		return out
	case omap:
		out := make(omap, len(x))
		for i := range x {
			out[i] = mapEntry{x[i].Key, normalize(x[i].Value)}
		}
		return out
	}
	return v
}

// FuzzDecode: arbitrary input never panics, and what decodes re-encodes to
// something that decodes to the same value.
func FuzzDecode(f *testing.F) {
	for _, v := range loadVectors(f) {
		f.Add(v.Bytes)
	}
	f.Add([]byte{0xdd, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0xdf, 0x7f, 0xff, 0xff, 0xff, 0xc0})
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := decodeValue(b, true)
		_, _, _, _, _ = parseResponse(b)
		_, _ = parseConsume(b)
		if err != nil {
			return
		}
		b2, err := appendValue(nil, v)
		if err != nil {
			t.Fatal(err)
		}
		v2, err := decodeValue(b2, true)
		if err != nil || !reflect.DeepEqual(normalize(v), normalize(v2)) {
			t.Fatalf("re-encoding changed %#v into %#v (%v)", v, v2, err)
		}
	})
}

func TestErrorsIs(t *testing.T) {
	e := newWireError(5, "UNKNOWN_CLUSTER", "cluster 'x'", false)
	if !errors.Is(e, ErrUnknownCluster) || errors.Is(e, ErrUnknownOp) {
		t.Errorf("protocol error matching")
	}
	wrapped := fmt.Errorf("ctx: %w", e)
	if !errors.Is(wrapped, ErrUnknownCluster) {
		t.Errorf("wrapped")
	}
	k := newWireError(10003, "UNKNOWN_TOPIC_OR_PART", "", false)
	if !errors.Is(k, ErrKafkaUnknownTopic) || errors.Is(k, ErrKafkaMsgTimedOut) || errors.Is(k, ErrUnknownCluster) {
		t.Errorf("kafka error matching")
	}
	if !errors.Is(newWireError(9812, "_UNKNOWN_TOPIC", "", false), ErrKafkaUnknownTopic) {
		t.Errorf("_UNKNOWN_TOPIC")
	}
	if !errors.Is(k, &KafkaError{Code: 10003}) {
		t.Errorf("kafka error by code")
	}
	ce := &connError{closed: true}
	if !errors.Is(ce, ErrClosed) || !errors.Is(ce, ErrConnectionLost) {
		t.Errorf("closed")
	}
	if errors.Is(&connError{}, ErrClosed) || !errors.Is(&connError{}, ErrConnectionLost) {
		t.Errorf("lost")
	}
	if !IsRetriable(newWireError(7, "TIMED_OUT", "", true)) || IsRetriable(e) {
		t.Errorf("retriable")
	}
}

// TestSeqMap: daemon runs are translated to client numbers, whatever the
// order of results and runs.
func TestSeqMap(t *testing.T) {
	var m seqMap
	var got []clientRun
	out := func(r clientRun) { got = append(got, r) }
	expand := func() map[uint64]int64 {
		res := map[uint64]int64{}
		for _, r := range got {
			for k := 0; k < r.count; k++ {
				rep := r.report(k)
				if _, dup := res[rep.Seq]; dup {
					t.Fatalf("seq %d reported twice", rep.Seq)
				}
				res[rep.Seq] = rep.Offset
			}
		}
		return res
	}
	// request A: client 1..3 = daemon 1..3; request B (rejected, no segment);
	// request C: client 6..9 = daemon 4..7 (daemon numbers skip B);
	// request D: client seqs 10, 12, 13 (interleaved topics) = daemon 8..10.
	// A run for C and D arrives before C's result.
	m.translate(wireRun{seq: 5, count: 5, partition: 1, offset: 100}, out) // daemon 5..9: C 5..7, D 8..9
	if len(got) != 0 || len(m.parked) == 0 {
		t.Fatalf("should park: %v", got)
	}
	m.add(1, 3, clientSeqs{start: 1}, "a", out)
	m.translate(wireRun{seq: 1, count: 3, partition: 0, offset: 10}, out)
	m.add(4, 4, clientSeqs{start: 6}, "c", out)
	m.add(8, 3, clientSeqs{seqs: []uint64{10, 12, 13}}, "d", out)
	m.translate(wireRun{seq: 4, count: 1, partition: 2, offset: -1, err: ErrInternal}, out)
	m.translate(wireRun{seq: 10, count: 1, partition: 3, offset: 7}, out)
	res := expand()
	want := map[uint64]int64{1: 10, 2: 11, 3: 12, 6: -1, 7: 100, 8: 101, 9: 102, 10: 103, 12: 104, 13: 7}
	if !reflect.DeepEqual(res, want) {
		t.Fatalf("got %v want %v", res, want)
	}
	if len(m.segs) != 0 || len(m.parked) != 0 {
		t.Fatalf("left over: %d segs, %d parked", len(m.segs), len(m.parked))
	}
	// lost: unreported positions of a segment get the error
	got = nil
	m.add(20, 5, clientSeqs{start: 30}, "e", out)
	m.translate(wireRun{seq: 21, count: 2, partition: 0, offset: 5}, out)
	if m.unreportedUpTo(30) != 3 || m.unreportedUpTo(29) != 0 {
		t.Fatalf("unreported %d", m.unreportedUpTo(30))
	}
	m.lost(ErrConnectionLost, out)
	res = expand()
	if len(res) != 5 || res[30] != -1 || res[31] != 5 || res[34] != -1 {
		t.Fatalf("lost: %v", res)
	}
}

func TestClientSeqs(t *testing.T) {
	var s clientSeqs
	for i, q := range []uint64{5, 6, 7} {
		s.add(i, q)
	}
	if s.seqs != nil || s.start != 5 {
		t.Fatalf("contiguous: %+v", s)
	}
	s.add(3, 9)
	if !reflect.DeepEqual(s.seqs, []uint64{5, 6, 7, 9}) || s.first() != 5 {
		t.Fatalf("gap: %+v", s)
	}
	r := s.run(1, 3, "t", 0, 0, nil)
	if r.seqAt(0) != 6 || r.seqAt(2) != 9 {
		t.Fatalf("run %+v", r)
	}
}

// TestSeqMapRandom: requests (some rejected, some numbered with gaps) whose
// results and report runs arrive in random interleavings; every message is
// reported exactly once, with its own offset.
func TestSeqMapRandom(t *testing.T) {
	r := rand.New(rand.NewSource(7))
	for round := 0; round < 300; round++ {
		type req struct {
			cs     clientSeqs
			n      int
			dstart uint64
		}
		var reqs []req
		nextC, nextD := uint64(1), uint64(1)
		for i, nreq := 0, 1+r.Intn(8); i < nreq; i++ {
			n := 1 + r.Intn(20)
			var cs clientSeqs
			for k := 0; k < n; k++ {
				nextC += uint64(r.Intn(2) * r.Intn(3)) // gaps: other topics' messages
				cs.add(k, nextC)
				nextC++
			}
			if r.Intn(5) == 0 { // rejected: no daemon numbers
				continue
			}
			nextD += uint64(r.Intn(2) * r.Intn(4)) // wait-mode requests in between
			reqs = append(reqs, req{cs, n, nextD})
			nextD += uint64(n)
		}
		// expected: client seq -> offset (daemon seq d gets offset 1000+d)
		want := map[uint64]int64{}
		var daemonSeqs []uint64
		for _, q := range reqs {
			for k := 0; k < q.n; k++ {
				one := q.cs.run(k, 1, "", 0, 0, nil)
				want[one.seqAt(0)] = 1000 + int64(q.dstart) + int64(k)
				daemonSeqs = append(daemonSeqs, q.dstart+uint64(k))
			}
		}
		// runs: consecutive daemon seqs merged at random
		var runs []wireRun
		for i := 0; i < len(daemonSeqs); {
			j := i + 1
			for j < len(daemonSeqs) && daemonSeqs[j] == daemonSeqs[j-1]+1 && r.Intn(4) != 0 {
				j++
			}
			runs = append(runs, wireRun{seq: daemonSeqs[i], count: j - i, offset: 1000 + int64(daemonSeqs[i])})
			i = j
		}
		// events: each result and each run, shuffled
		type event struct {
			isRun bool
			i     int
		}
		var evs []event
		for i := range reqs {
			evs = append(evs, event{false, i})
		}
		for i := range runs {
			evs = append(evs, event{true, i})
		}
		r.Shuffle(len(evs), func(i, j int) { evs[i], evs[j] = evs[j], evs[i] })
		var m seqMap
		got := map[uint64]int64{}
		out := func(cr clientRun) {
			for k := 0; k < cr.count; k++ {
				rep := cr.report(k)
				if _, dup := got[rep.Seq]; dup {
					t.Fatalf("round %d: seq %d twice", round, rep.Seq)
				}
				got[rep.Seq] = rep.Offset
			}
		}
		for _, e := range evs {
			if e.isRun {
				m.translate(runs[e.i], out)
			} else {
				q := reqs[e.i]
				m.add(q.dstart, q.n, q.cs, "", out)
			}
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("round %d:\n got  %v\n want %v", round, got, want)
		}
		if len(m.segs) != 0 || len(m.parked) != 0 {
			t.Fatalf("round %d: %d segments, %d parked runs left", round, len(m.segs), len(m.parked))
		}
	}
}
