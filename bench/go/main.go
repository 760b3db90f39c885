// Command kafkad-bench compares the kafkad Go stub with the in-process Go
// Kafka clients on one broker, in one run: async produce of N 100-byte
// messages with a delivery confirmation for every message, then reading the
// N messages back from the beginning in batches.
//
// Contenders:
//
//	kafkad     the kafkad Go stub (client-stubs/go) over the daemon's socket:
//	           Produce + delivery callback, Flush; OpenConsumer (simple,
//	           earliest, no group) + Consume(batch) loop
//	confluent  confluent-kafka-go v2 (cgo, its bundled static librdkafka):
//	           Produce + the Events channel; Consumer.Assign(all partitions,
//	           OffsetBeginning) + Poll loop
//	confluent-tuned  the same with the consumer's fetch.queue.backoff.ms=10
//	franz      franz-go (pure Go): Produce with a promise; a direct
//	           (groupless) consumer of the topic from the start, PollFetches
//
// Without -contender the program is the driver: for every repetition and
// contender (order rotating between repetitions) it creates a fresh topic
// with franz-go's admin client, records the 1-minute load average, and runs
// `<itself> -contender NAME -topic T ...` as a separate process, which does
// both phases and prints one JSON line. One process per run keeps each
// client's heap, GC pacing, goroutines and (for confluent) librdkafka's
// threads out of the others' measurements, and makes getrusage(RUSAGE_SELF)
// the CPU of exactly one client. The driver then prints a markdown table of
// the medians and writes every run to <results>/go-<timestamp>.json.
//
// Measured per phase: wall time and msgs/s; the client's CPU
// (getrusage(RUSAGE_SELF), all threads, cgo ones included); the daemon's and
// the broker's CPU (utime+stime of /proc/PID/stat, 10 ms ticks) and, for the
// daemon, per thread name; and "other" CPU: the machine's busy time
// (/proc/stat) minus client, daemon and broker, i.e. what other people's
// processes took meanwhile.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

type options struct {
	bootstrap    string
	socket       string
	daemonPID    int
	brokerPID    int
	n            int
	size         int
	reps         int
	warmup       int
	partitions   int
	batch        int
	linger       time.Duration
	contenders   string
	resultsDir   string
	cpuprofile   string
	deadline     time.Duration
	phaseTimeout time.Duration
	note         string

	// child mode
	contender string
	topic     string
	rep       int

	// versions of things the program cannot see itself
	kafkadVersion string
	daemonRdkafka string
	kafkaVersion  string
	brokerJVMOpts string
	daemonConfig  string
}

var allContenders = []string{"kafkad", "confluent", "confluent-tuned", "franz"}

func main() {
	var o options
	flag.StringVar(&o.bootstrap, "bootstrap", "", "broker address host:port (required)")
	flag.StringVar(&o.socket, "socket", "", "kafkad daemon socket (required for the kafkad contender)")
	flag.IntVar(&o.daemonPID, "daemon-pid", 0, "kafkad daemon pid, to read its CPU from /proc")
	flag.IntVar(&o.brokerPID, "broker-pid", 0, "broker pid, to read its CPU from /proc (optional)")
	flag.IntVar(&o.n, "n", 500000, "messages per run")
	flag.IntVar(&o.size, "size", 100, "message value size (bytes)")
	flag.IntVar(&o.reps, "reps", 3, "repetitions per contender")
	flag.IntVar(&o.warmup, "warmup", 100000, "messages of one unrecorded warm-up run per contender before the repetitions (0: none)")
	flag.IntVar(&o.partitions, "partitions", 6, "partitions of each fresh topic")
	flag.IntVar(&o.batch, "batch", 10000, "consume batch: kafkad Consume(max); the other clients have no such knob (they hand out what a fetch brought)")
	flag.DurationVar(&o.linger, "linger", 5*time.Millisecond, "producer linger of the in-process clients (the daemon's is its linger.ms, default 5 ms) and of the stub's local batches")
	flag.StringVar(&o.contenders, "contenders", strings.Join(allContenders, ","), "which contenders, comma-separated")
	flag.StringVar(&o.resultsDir, "results", "bench/results", "directory for go-<timestamp>.json")
	flag.StringVar(&o.cpuprofile, "cpuprofile", "", "directory: write a Go CPU profile of every measured phase (<contender>-<phase>-<rep>.pprof)")
	flag.DurationVar(&o.deadline, "deadline", 0, "driver: start no run after this much time (0: no limit); the table then has what finished")
	flag.DurationVar(&o.phaseTimeout, "phase-timeout", 60*time.Second, "a phase that takes longer fails")
	flag.StringVar(&o.note, "note", "", "free text stored in the JSON")
	flag.StringVar(&o.contender, "contender", "", "child mode: run one contender (kafkad, confluent, confluent-tuned, franz) on -topic and print one JSON line")
	flag.StringVar(&o.topic, "topic", "", "child mode: the (empty) topic")
	flag.IntVar(&o.rep, "rep", 0, "child mode: repetition number (for profile names); -1 is the warm-up")
	flag.StringVar(&o.kafkadVersion, "kafkad-version", "", "recorded in the JSON")
	flag.StringVar(&o.daemonRdkafka, "daemon-librdkafka", "", "the daemon's librdkafka version (recorded)")
	flag.StringVar(&o.kafkaVersion, "kafka-version", "", "broker version (recorded)")
	flag.StringVar(&o.brokerJVMOpts, "broker-jvm-opts", "", "broker JVM options (recorded)")
	flag.StringVar(&o.daemonConfig, "daemon-config", "", "path of the daemon's config file (its text is recorded)")
	flag.Parse()
	if o.bootstrap == "" {
		fatalf("-bootstrap is required")
	}
	if o.contender != "" {
		os.Exit(child(&o))
	}
	os.Exit(driver(&o))
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "kafkad-bench: "+format+"\n", args...)
	os.Exit(2)
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%s] "+format+"\n", append([]any{time.Now().Format("15:04:05.000")}, args...)...)
}

// ---------------------------------------------------------------- measuring

const clkTck = 100 // USER_HZ on Linux

// snap is the state of the clocks at one instant.
type snap struct {
	wall      time.Time
	self      float64            // this process, user+sys seconds
	daemon    float64            // -1: not watched
	broker    float64            // -1: not watched
	busy      float64            // all CPUs, busy seconds
	daemonThr map[string]float64 // per thread name (kafkad only)
}

func selfCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(ru.Utime) + tv(ru.Stime)
}

// statCPU parses utime+stime (seconds) and the name out of a /proc stat file.
func statCPU(path string) (float64, string, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, "", false
	}
	// "pid (comm) state ppid ...": comm may hold spaces and parentheses
	open, close := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || close < open {
		return 0, "", false
	}
	f := strings.Fields(string(b[close+1:]))
	// after comm: state(0) ppid(1) ... utime(11) stime(12)
	if len(f) < 13 {
		return 0, "", false
	}
	u, _ := strconv.ParseFloat(f[11], 64)
	s, _ := strconv.ParseFloat(f[12], 64)
	return (u + s) / clkTck, string(b[open+1 : close]), true
}

func procCPU(pid int) float64 {
	if pid <= 0 {
		return -1
	}
	v, _, ok := statCPU(fmt.Sprintf("/proc/%d/stat", pid))
	if !ok {
		return -1
	}
	return v
}

// threadCPU sums the CPU of a process's threads by thread name (threads
// that ended meanwhile are missing: their time is in the process total).
func threadCPU(pid int) map[string]float64 {
	if pid <= 0 {
		return nil
	}
	dirs, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
	m := make(map[string]float64)
	for _, d := range dirs {
		if v, name, ok := statCPU(d); ok {
			m[name] += v
		}
	}
	return m
}

func machineBusy() float64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 8 || f[0] != "cpu" {
		return 0
	}
	var busy float64
	for _, idx := range []int{1, 2, 3, 6, 7, 8} { // user nice system irq softirq steal
		if idx < len(f) {
			v, _ := strconv.ParseFloat(f[idx], 64)
			busy += v
		}
	}
	return busy / clkTck
}

func loadAvg1() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return -1
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

func (o *options) snap(threads bool) snap {
	s := snap{wall: time.Now(), self: selfCPU(), daemon: procCPU(o.daemonPID), broker: procCPU(o.brokerPID), busy: machineBusy()}
	if threads {
		s.daemonThr = threadCPU(o.daemonPID)
	}
	return s
}

// PhaseResult is one measured phase of one run.
type PhaseResult struct {
	Messages      int     `json:"messages"`
	Seconds       float64 `json:"seconds"`
	MsgsPerS      float64 `json:"msgs_per_s"`
	ClientCPU     float64 `json:"client_cpu_s"`
	DaemonCPU     float64 `json:"daemon_cpu_s"` // -1: not watched
	BrokerCPU     float64 `json:"broker_cpu_s"` // -1: not watched
	OtherCPU      float64 `json:"other_cpu_s"`  // machine busy minus client, daemon, broker
	OtherShare    float64 `json:"other_share"`  // OtherCPU / (seconds * cores)
	ClientPer100k float64 `json:"client_cpu_s_per_100k"`
	DaemonPer100k float64 `json:"daemon_cpu_s_per_100k"`
	TotalPer100k  float64 `json:"client_daemon_cpu_s_per_100k"`
	BrokerPer100k float64 `json:"broker_cpu_s_per_100k"`
	// consume only: from before the consumer was created
	SetupSeconds  float64 `json:"setup_seconds,omitempty"`
	MsgsPerSSetup float64 `json:"msgs_per_s_incl_setup,omitempty"`
	// daemon CPU seconds by thread name over the phase (kafkad only)
	DaemonThreads map[string]float64 `json:"daemon_threads,omitempty"`
	Errors        int                `json:"errors"`
	FirstError    string             `json:"first_error,omitempty"`
	Anomalies     int                `json:"offset_anomalies,omitempty"`
	// consume: longest time between two messages 256 apart (a stall)
	MaxGap float64 `json:"max_gap_s,omitempty"`
}

func phase(a, b snap, msgs int) PhaseResult {
	d := func(x, y float64) float64 {
		if x < 0 || y < 0 {
			return -1
		}
		return math.Max(0, y-x)
	}
	r := PhaseResult{
		Messages:  msgs,
		Seconds:   b.wall.Sub(a.wall).Seconds(),
		ClientCPU: b.self - a.self,
		DaemonCPU: d(a.daemon, b.daemon),
		BrokerCPU: d(a.broker, b.broker),
	}
	r.MsgsPerS = float64(msgs) / math.Max(r.Seconds, 1e-9)
	other := (b.busy - a.busy) - r.ClientCPU - math.Max(0, r.DaemonCPU) - math.Max(0, r.BrokerCPU)
	r.OtherCPU = math.Max(0, other)
	r.OtherShare = r.OtherCPU / math.Max(r.Seconds*float64(runtime.NumCPU()), 1e-9)
	per := 100000 / float64(max(msgs, 1))
	r.ClientPer100k = r.ClientCPU * per
	r.DaemonPer100k = math.Max(0, r.DaemonCPU) * per
	r.TotalPer100k = r.ClientPer100k + r.DaemonPer100k
	if r.BrokerCPU >= 0 {
		r.BrokerPer100k = r.BrokerCPU * per
	}
	if a.daemonThr != nil && b.daemonThr != nil {
		r.DaemonThreads = make(map[string]float64)
		for k, v := range b.daemonThr {
			if dv := v - a.daemonThr[k]; dv > 0 {
				r.DaemonThreads[k] = math.Round(dv*100) / 100
			}
		}
	}
	return r
}

// ---------------------------------------------------------------- child

// RunResult is what one child process reports.
type RunResult struct {
	Contender string  `json:"contender"`
	Rep       int     `json:"rep"`
	Topic     string  `json:"topic"`
	Load1     float64 `json:"load1_before"` // filled in by the driver
	// driver: creating the topic; the child process from start to exit
	CreateSeconds  float64 `json:"create_topic_s"`
	ProcessSeconds float64 `json:"process_s"`
	// child: client creation + the warm-up message, before the produce clock
	ProduceSetup float64           `json:"produce_setup_s"`
	Produce      PhaseResult       `json:"produce"`
	Consume      PhaseResult       `json:"consume"`
	Info         map[string]string `json:"info,omitempty"`
	Error        string            `json:"error,omitempty"`
}

// contender runs the two phases; the measurer brackets the measured parts.
type contender interface {
	// produce sends n messages of payload to topic and returns once every
	// message has its delivery report; start() is called when the client
	// is connected and warm, right before the first measured Produce.
	produce(ctx context.Context, m *measurer, topic string, payload []byte, n int) (errs int, firstErr error, err error)
	// consume reads want messages of topic from the beginning, calling
	// m.got for every batch it hands to the application.
	consume(ctx context.Context, m *measurer, topic string, want int) error
	info() map[string]string
}

// measurer takes the snapshots of a phase and checks consumed messages.
type measurer struct {
	o        *options
	name     string
	phase    string
	start    snap // produce: first message; consume: before the consumer exists
	first    snap // consume: first message in hand
	last     snap // end of the measured part (finish)
	started  bool
	gotFirst bool
	done     bool
	profile  *os.File

	// consume checks
	n        int
	bytes    int64
	next     map[int32]int64
	anomaly  int
	lastTick time.Time     // every 256th message: time, for the longest stall
	maxGap   time.Duration // longest time between two such ticks
}

func (m *measurer) begin(ph string) {
	m.phase = ph
	m.started, m.gotFirst, m.done = false, false, false
	m.n, m.bytes, m.anomaly = 0, 0, 0
	m.lastTick, m.maxGap = time.Time{}, 0
	m.next = make(map[int32]int64)
}

// mark starts the measured part of the phase.
func (m *measurer) mark() {
	if m.o.cpuprofile != "" {
		_ = os.MkdirAll(m.o.cpuprofile, 0o755)
		rep := strconv.Itoa(m.o.rep)
		if m.o.rep < 0 {
			rep = "warmup"
		}
		f, err := os.Create(filepath.Join(m.o.cpuprofile, fmt.Sprintf("%s-%s-%s.pprof", m.name, m.phase, rep)))
		if err == nil && pprof.StartCPUProfile(f) == nil {
			m.profile = f
		}
	}
	m.start = m.o.snap(m.name == "kafkad")
	m.started = true
}

func (m *measurer) end() snap {
	s := m.o.snap(m.name == "kafkad")
	if m.profile != nil {
		pprof.StopCPUProfile()
		m.profile.Close()
		m.profile = nil
	}
	return s
}

// got accounts one consumed message.
func (m *measurer) got(partition int32, offset int64, value []byte) {
	if !m.gotFirst {
		m.first = m.o.snap(m.name == "kafkad")
		m.gotFirst = true
	}
	m.n++
	if m.n&255 == 1 {
		now := time.Now()
		if !m.lastTick.IsZero() && now.Sub(m.lastTick) > m.maxGap {
			m.maxGap = now.Sub(m.lastTick)
		}
		m.lastTick = now
	}
	m.bytes += int64(len(value))
	if want, ok := m.next[partition]; ok && offset != want {
		m.anomaly++
	} else if !ok && offset != 0 {
		m.anomaly++ // a fresh topic starts at offset 0
	}
	m.next[partition] = offset + 1
}

func child(o *options) int {
	res := RunResult{Contender: o.contender, Rep: o.rep, Topic: o.topic}
	defer func() {
		b, _ := json.Marshal(res)
		fmt.Printf("RESULT %s\n", b)
	}()
	var c contender
	switch o.contender {
	case "kafkad":
		if o.socket == "" {
			res.Error = "-socket is required for kafkad"
			return 1
		}
		c = &kafkadContender{o: o}
	case "confluent":
		c = &confluentContender{o: o}
	case "confluent-tuned":
		c = &confluentContender{o: o, tuned: true}
	case "franz":
		c = &franzContender{o: o}
	default:
		res.Error = "unknown contender " + o.contender
		return 1
	}
	m := &measurer{o: o, name: o.contender}
	payload := bytes.Repeat([]byte{'x'}, o.size)
	copy(payload, "kafkad-bench ")

	// produce (plus one synchronous warm-up message before the clock starts)
	t0 := time.Now()
	m.begin("produce")
	ctx, cancel := context.WithTimeout(context.Background(), o.phaseTimeout)
	errs, firstErr, err := c.produce(ctx, m, o.topic, payload, o.n)
	cancel()
	if err != nil {
		res.Error = "produce: " + err.Error()
		return 1
	}
	if !m.started || !m.done {
		res.Error = "produce: the contender did not mark its measured phase"
		return 1
	}
	res.ProduceSetup = m.start.wall.Sub(t0).Seconds()
	res.Produce = phase(m.start, m.last, o.n)
	res.Produce.Errors = errs
	if firstErr != nil {
		res.Produce.FirstError = firstErr.Error()
	}
	logf("%s rep %d: produced %d in %.2fs (+%.2fs setup): %.0f msgs/s, %.3f s CPU/100k (client %.3f + daemon %.3f)",
		o.contender, o.rep, o.n, res.Produce.Seconds, res.ProduceSetup, res.Produce.MsgsPerS, res.Produce.TotalPer100k,
		res.Produce.ClientPer100k, res.Produce.DaemonPer100k)
	runtime.GC() // the produce phase's garbage is not the consumer's

	// consume everything back: n + the warm-up message
	want := o.n + 1
	m.begin("consume")
	ctx, cancel = context.WithTimeout(context.Background(), o.phaseTimeout)
	m.mark()
	err = c.consume(ctx, m, o.topic, want)
	m.finish() // no-op when the contender did (before closing its consumer)
	last := m.last
	cancel()
	if err != nil {
		res.Error = fmt.Sprintf("consume (after %d of %d messages): %v", m.n, want, err)
		return 1
	}
	if !m.gotFirst {
		m.first = m.start
	}
	res.Consume = phase(m.first, last, m.n)
	res.Consume.SetupSeconds = m.first.wall.Sub(m.start.wall).Seconds()
	res.Consume.MsgsPerSSetup = float64(m.n) / math.Max(last.wall.Sub(m.start.wall).Seconds(), 1e-9)
	res.Consume.Anomalies = m.anomaly
	res.Consume.MaxGap = m.maxGap.Seconds()
	if m.n != want || m.bytes != int64(want)*int64(o.size) {
		res.Consume.Errors = 1
		res.Consume.FirstError = fmt.Sprintf("got %d messages (%d value bytes), want %d (%d)", m.n, m.bytes, want, int64(want)*int64(o.size))
	}
	logf("%s rep %d: consumed %d in %.2fs (+%.2fs setup): %.0f msgs/s, %.3f s CPU/100k (client %.3f + daemon %.3f), longest stall %.3fs",
		o.contender, o.rep, m.n, res.Consume.Seconds, res.Consume.SetupSeconds, res.Consume.MsgsPerS,
		res.Consume.TotalPer100k, res.Consume.ClientPer100k, res.Consume.DaemonPer100k, res.Consume.MaxGap)
	res.Info = c.info()
	return 0
}

// ---------------------------------------------------------------- driver

// Report is the JSON file.
type Report struct {
	Started    time.Time      `json:"started"`
	Conditions map[string]any `json:"conditions"`
	Runs       []RunResult    `json:"runs"`
	Warmup     []RunResult    `json:"warmup,omitempty"`
	Medians    []Median       `json:"medians"`
	Table      string         `json:"table_markdown"`
}

// Median is one row of the table.
type Median struct {
	Contender         string    `json:"contender"`
	Runs              int       `json:"runs"`
	ProduceMsgsPerS   float64   `json:"produce_msgs_per_s"`
	ProduceClient     float64   `json:"produce_client_cpu_s_per_100k"`
	ProduceDaemon     float64   `json:"produce_daemon_cpu_s_per_100k"`
	ProduceTotal      float64   `json:"produce_cpu_s_per_100k"`
	ConsumeMsgsPerS   float64   `json:"consume_msgs_per_s"`
	ConsumeSetupMsgsS float64   `json:"consume_msgs_per_s_incl_setup"`
	ConsumeClient     float64   `json:"consume_client_cpu_s_per_100k"`
	ConsumeDaemon     float64   `json:"consume_daemon_cpu_s_per_100k"`
	ConsumeTotal      float64   `json:"consume_cpu_s_per_100k"`
	BrokerProduce     float64   `json:"produce_broker_cpu_s_per_100k"`
	BrokerConsume     float64   `json:"consume_broker_cpu_s_per_100k"`
	Load1             []float64 `json:"load1_before"`
	OtherProduce      float64   `json:"produce_other_share"`
	OtherConsume      float64   `json:"consume_other_share"`
	ProduceMin        float64   `json:"produce_msgs_per_s_min"`
	ProduceMax        float64   `json:"produce_msgs_per_s_max"`
	ConsumeMin        float64   `json:"consume_msgs_per_s_min"`
	ConsumeMax        float64   `json:"consume_msgs_per_s_max"`
	ConsumeStall      float64   `json:"consume_longest_stall_s"` // over all reps
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := slices.Clone(v)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

type topicAdmin struct {
	cl  *kgo.Client
	adm *kadm.Client
}

func newAdmin(bootstrap string) (*topicAdmin, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(bootstrap))
	if err != nil {
		return nil, err
	}
	return &topicAdmin{cl, kadm.NewClient(cl)}, nil
}

// create makes a fresh topic and waits until every partition has a leader.
func (a *topicAdmin) create(ctx context.Context, topic string, partitions int) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	resp, err := a.adm.CreateTopics(ctx, int32(partitions), 1, nil, topic)
	if err != nil {
		return err
	}
	if r, ok := resp[topic]; ok && r.Err != nil {
		return r.Err
	}
	for {
		md, err := a.adm.Metadata(ctx, topic)
		if err == nil {
			t, ok := md.Topics[topic]
			if ok && t.Err == nil && len(t.Partitions) == partitions {
				ready := true
				for _, p := range t.Partitions {
					if p.Err != nil || p.Leader < 0 {
						ready = false
					}
				}
				if ready {
					return nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("topic %s: no leaders for all partitions: %w", topic, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// runChild runs one contender in its own process.
func runChild(o *options, name, topic string, rep, n int) RunResult {
	exe, err := os.Executable()
	if err != nil {
		return RunResult{Contender: name, Rep: rep, Error: err.Error()}
	}
	args := []string{
		"-contender", name, "-topic", topic, "-rep", strconv.Itoa(rep),
		"-bootstrap", o.bootstrap, "-socket", o.socket,
		"-daemon-pid", strconv.Itoa(o.daemonPID), "-broker-pid", strconv.Itoa(o.brokerPID),
		"-n", strconv.Itoa(n), "-size", strconv.Itoa(o.size), "-batch", strconv.Itoa(o.batch),
		"-linger", o.linger.String(), "-phase-timeout", o.phaseTimeout.String(),
	}
	if o.cpuprofile != "" {
		args = append(args, "-cpuprofile", o.cpuprofile)
	}
	cmd := exec.Command(exe, args...)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the driver
	var out bytes.Buffer
	cmd.Stdout = &out
	err = cmd.Run()
	var res RunResult
	found := false
	sc := bufio.NewScanner(&out)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		if line, ok := strings.CutPrefix(sc.Text(), "RESULT "); ok {
			if json.Unmarshal([]byte(line), &res) == nil {
				found = true
			}
		}
	}
	if !found {
		res = RunResult{Contender: name, Rep: rep, Topic: topic, Error: fmt.Sprintf("no result (exit: %v)", err)}
	} else if err != nil && res.Error == "" {
		res.Error = fmt.Sprintf("exit: %v", err)
	}
	return res
}

func goModVersions() map[string]string {
	m := map[string]string{"go": runtime.Version()}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			v := d.Version
			if d.Replace != nil {
				v = d.Replace.Path
				if d.Replace.Version != "" {
					v += "@" + d.Replace.Version
				}
			}
			m[d.Path] = v
		}
	}
	return m
}

func driver(o *options) int {
	t0 := time.Now()
	names := strings.Split(o.contenders, ",")
	for _, n := range names {
		if !slices.Contains(allContenders, n) {
			fatalf("unknown contender %q (have %s)", n, strings.Join(allContenders, ", "))
		}
		if n == "kafkad" && o.socket == "" {
			fatalf("the kafkad contender needs -socket")
		}
	}
	adm, err := newAdmin(o.bootstrap)
	if err != nil {
		fatalf("admin client: %v", err)
	}
	defer adm.cl.Close()
	prefix := "gobench" + t0.Format("150405")
	rep := &Report{Started: t0}
	one := func(name string, r, n int) RunResult {
		label := strconv.Itoa(r)
		if r < 0 {
			label = "w"
		}
		topic := fmt.Sprintf("%s-%s-%s", prefix, name, label)
		tc := time.Now()
		if err := adm.create(context.Background(), topic, o.partitions); err != nil {
			return RunResult{Contender: name, Rep: r, Topic: topic, Error: "create topic: " + err.Error()}
		}
		tr := time.Now()
		load := loadAvg1()
		res := runChild(o, name, topic, r, n)
		res.Load1 = load
		res.CreateSeconds = tr.Sub(tc).Seconds()
		res.ProcessSeconds = time.Since(tr).Seconds()
		if res.Error != "" {
			logf("%s rep %s FAILED: %s", name, label, res.Error)
		}
		// not deleted: deleting makes the broker's next create wait ~5 s, and
		// the log deletion would run during later runs (the broker's
		// directory goes away with the run)
		return res
	}
	past := func() bool { return o.deadline > 0 && time.Since(t0) > o.deadline }
	if o.warmup > 0 {
		for _, name := range names {
			if past() {
				break
			}
			logf("warm-up: %s, %d messages", name, o.warmup)
			rep.Warmup = append(rep.Warmup, one(name, -1, o.warmup))
		}
	}
	for r := 0; r < o.reps; r++ {
		for i := range names {
			name := names[(i+r)%len(names)] // rotate the order
			if past() {
				logf("deadline reached: skipping %s rep %d", name, r)
				continue
			}
			logf("rep %d: %s (load average %.2f)", r, name, loadAvg1())
			res := one(name, r, o.n)
			logf("rep %d: %s: topic created in %.2fs, process ran %.2fs", r, name, res.CreateSeconds, res.ProcessSeconds)
			rep.Runs = append(rep.Runs, res)
		}
	}

	// medians
	var meds []Median
	for _, name := range names {
		var ok []RunResult
		for _, r := range rep.Runs {
			if r.Contender == name && r.Error == "" && r.Produce.Errors == 0 && r.Consume.Errors == 0 {
				ok = append(ok, r)
			}
		}
		col := func(f func(RunResult) float64) []float64 {
			v := make([]float64, len(ok))
			for i, r := range ok {
				v[i] = f(r)
			}
			return v
		}
		pm := col(func(r RunResult) float64 { return r.Produce.MsgsPerS })
		cm := col(func(r RunResult) float64 { return r.Consume.MsgsPerS })
		med := Median{
			Contender:         name,
			Runs:              len(ok),
			ProduceMsgsPerS:   median(pm),
			ProduceClient:     median(col(func(r RunResult) float64 { return r.Produce.ClientPer100k })),
			ProduceDaemon:     median(col(func(r RunResult) float64 { return r.Produce.DaemonPer100k })),
			ProduceTotal:      median(col(func(r RunResult) float64 { return r.Produce.TotalPer100k })),
			ConsumeMsgsPerS:   median(cm),
			ConsumeSetupMsgsS: median(col(func(r RunResult) float64 { return r.Consume.MsgsPerSSetup })),
			ConsumeClient:     median(col(func(r RunResult) float64 { return r.Consume.ClientPer100k })),
			ConsumeDaemon:     median(col(func(r RunResult) float64 { return r.Consume.DaemonPer100k })),
			ConsumeTotal:      median(col(func(r RunResult) float64 { return r.Consume.TotalPer100k })),
			BrokerProduce:     median(col(func(r RunResult) float64 { return r.Produce.BrokerPer100k })),
			BrokerConsume:     median(col(func(r RunResult) float64 { return r.Consume.BrokerPer100k })),
			OtherProduce:      median(col(func(r RunResult) float64 { return r.Produce.OtherShare })),
			OtherConsume:      median(col(func(r RunResult) float64 { return r.Consume.OtherShare })),
		}
		if len(ok) > 0 {
			med.ProduceMin, med.ProduceMax = slices.Min(pm), slices.Max(pm)
			med.ConsumeMin, med.ConsumeMax = slices.Min(cm), slices.Max(cm)
			med.ConsumeStall = slices.Max(col(func(r RunResult) float64 { return r.Consume.MaxGap }))
		}
		for _, r := range rep.Runs {
			if r.Contender == name {
				med.Load1 = append(med.Load1, r.Load1)
			}
		}
		meds = append(meds, med)
	}
	rep.Medians = meds
	rep.Conditions = conditions(o, rep)
	rep.Table = table(meds, o) + "\n" + describe(o, rep.Conditions)

	fmt.Println()
	fmt.Print(rep.Table)
	fmt.Println()
	for _, r := range rep.Runs {
		if r.Contender == "kafkad" && r.Error == "" {
			fmt.Printf("kafkad rep %d daemon CPU by thread: produce %s; consume %s\n", r.Rep, fmtThreads(r.Produce.DaemonThreads), fmtThreads(r.Consume.DaemonThreads))
		}
	}
	failed := 0
	for _, r := range append(slices.Clone(rep.Warmup), rep.Runs...) {
		if r.Error != "" || r.Produce.Errors != 0 || r.Consume.Errors != 0 {
			failed++
			fmt.Printf("FAILED: %s rep %d: %s %s %s\n", r.Contender, r.Rep, r.Error, r.Produce.FirstError, r.Consume.FirstError)
		}
	}
	if err := os.MkdirAll(o.resultsDir, 0o755); err != nil {
		logf("results dir: %v", err)
		return 1
	}
	path := filepath.Join(o.resultsDir, "go-"+t0.Format("20060102-150405")+".json")
	b, _ := json.MarshalIndent(rep, "", " ")
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		logf("writing %s: %v", path, err)
		return 1
	}
	fmt.Printf("\nresults: %s (%.0f s)\n", path, time.Since(t0).Seconds())
	if failed > 0 || len(rep.Runs) == 0 {
		return 1
	}
	return 0
}

func fmtThreads(m map[string]float64) string {
	type kv struct {
		k string
		v float64
	}
	var l []kv
	for k, v := range m {
		l = append(l, kv{k, v})
	}
	sort.Slice(l, func(i, j int) bool { return l[i].v > l[j].v })
	var parts []string
	for _, e := range l {
		if e.v >= 0.01 {
			parts = append(parts, fmt.Sprintf("%s %.2fs", e.k, e.v))
		}
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ", ")
}

func table(meds []Median, o *options) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d × %d-byte messages, %d partitions, median of %d reps (min–max msgs/s in parentheses); CPU in seconds per 100k messages, client + daemon; longest consume stall: the longest time between two messages 256 apart, over all reps\n\n",
		o.n, o.size, o.partitions, o.reps)
	b.WriteString("| contender | produce msgs/s | produce CPU s/100k (client + daemon) | consume msgs/s | consume CPU s/100k (client + daemon) | consume msgs/s incl. setup | longest consume stall | broker CPU s/100k (prod / cons) | load avg 1m before each run | other load (prod / cons) |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---|---:|\n")
	for _, m := range meds {
		if m.Runs == 0 {
			fmt.Fprintf(&b, "| %s | failed | | | | | | | | |\n", m.Contender)
			continue
		}
		cpu := func(total, client, daemon float64) string {
			if m.Contender == "kafkad" {
				return fmt.Sprintf("%.3f (%.3f + %.3f)", total, client, daemon)
			}
			return fmt.Sprintf("%.3f", total)
		}
		var loads []string
		for _, l := range m.Load1 {
			loads = append(loads, fmt.Sprintf("%.2f", l))
		}
		fmt.Fprintf(&b, "| %s | %s (%s–%s) | %s | %s (%s–%s) | %s | %s | %.2f s | %.3f / %.3f | %s | %.0f%% / %.0f%% |\n",
			m.Contender,
			kfmt(m.ProduceMsgsPerS), kfmt(m.ProduceMin), kfmt(m.ProduceMax),
			cpu(m.ProduceTotal, m.ProduceClient, m.ProduceDaemon),
			kfmt(m.ConsumeMsgsPerS), kfmt(m.ConsumeMin), kfmt(m.ConsumeMax),
			cpu(m.ConsumeTotal, m.ConsumeClient, m.ConsumeDaemon),
			kfmt(m.ConsumeSetupMsgsS),
			m.ConsumeStall,
			m.BrokerProduce, m.BrokerConsume,
			strings.Join(loads, ", "),
			100*m.OtherProduce, 100*m.OtherConsume)
	}
	return b.String()
}

// describe is the conditions block printed under the table.
func describe(o *options, c map[string]any) string {
	var b strings.Builder
	mods, _ := c["modules"].(map[string]string)
	fmt.Fprintf(&b, "Conditions: %v CPUs (%v), GOMAXPROCS %v, %s; Kafka %s (one broker, JVM %q, loopback); "+
		"kafkad %s on librdkafka %s; confluent-kafka-go %s (librdkafka %v, %v); franz-go %s. "+
		"One process per run, order rotating between reps, after a %d-message warm-up run of each contender. "+
		"Produce: msgs/s from the first Produce to the last delivery report (one synchronous message before, "+
		"to connect and learn the topic); consume: first message to the last (\"incl. setup\": from creating "+
		"the consumer). CPU: the client process (getrusage, all threads) + the kafkad daemon (/proc, 10 ms ticks); "+
		"other load: the rest of the machine's busy CPU meanwhile, as a share of all CPUs.%s\n\n",
		c["cpus"], c["cpu_model"], c["gomaxprocs"], mods["go"], o.kafkaVersion, o.brokerJVMOpts,
		o.kafkadVersion, o.daemonRdkafka, mods["github.com/confluentinc/confluent-kafka-go/v2"],
		firstOf(c, "confluent.librdkafka", "confluent-tuned.librdkafka"), firstOf(c, "confluent.link", "confluent-tuned.link"),
		mods["github.com/twmb/franz-go"], o.warmup, noteText(o.note))
	set, _ := c["settings"].(map[string]string)
	for _, name := range strings.Split(o.contenders, ",") {
		fmt.Fprintf(&b, "- %s: %s\n", name, set[name])
	}
	return b.String()
}

func noteText(s string) string {
	if s == "" {
		return ""
	}
	return " Note: " + s + "."
}

func firstOf(c map[string]any, keys ...string) any {
	for _, k := range keys {
		if v, ok := c[k]; ok {
			return v
		}
	}
	return "?"
}

func kfmt(v float64) string {
	if math.IsNaN(v) {
		return "-"
	}
	s := strconv.FormatInt(int64(math.Round(v)), 10)
	var out []byte
	for i := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}

func conditions(o *options, rep *Report) map[string]any {
	host, _ := os.Hostname()
	c := map[string]any{
		"host":              host,
		"cpus":              runtime.NumCPU(),
		"gomaxprocs":        runtime.GOMAXPROCS(0),
		"messages":          o.n,
		"size":              o.size,
		"reps":              o.reps,
		"warmup_messages":   o.warmup,
		"partitions":        o.partitions,
		"consume_batch":     o.batch,
		"linger":            o.linger.String(),
		"bootstrap":         o.bootstrap,
		"modules":           goModVersions(),
		"kafkad":            o.kafkadVersion,
		"daemon_librdkafka": o.daemonRdkafka,
		"kafka":             o.kafkaVersion,
		"broker_jvm_opts":   o.brokerJVMOpts,
		"note":              o.note,
		"settings":          settings(o),
	}
	if o.daemonConfig != "" {
		if b, err := os.ReadFile(o.daemonConfig); err == nil {
			c["daemon_config"] = string(b)
		}
	}
	for _, r := range rep.Runs {
		if r.Info != nil {
			for k, v := range r.Info {
				c[r.Contender+"."+k] = v
			}
		}
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				_, v, _ := strings.Cut(l, ":")
				c["cpu_model"] = strings.TrimSpace(v)
				break
			}
		}
	}
	return c
}
