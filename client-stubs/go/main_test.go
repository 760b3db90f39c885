package kafkad

// Test harness: TestMain starts one kafkad ($KAFKAD_BIN, default
// <repo>/build/daemon/kafkad) on the real Kafka broker named by
// $KAFKAD_TEST_BOOTSTRAP, topics are created with
// <repo>/tests/kafka/cluster create-topic --dir $KAFKAD_TEST_KAFKA_DIR.
// Without a broker the integration tests fail (they are not skipped): run
// them via `make test`, which starts one.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// daemonProc is one kafkad process with its own directory, config and socket.
type daemonProc struct {
	dir     string
	socket  string
	logPath string
	cmd     *exec.Cmd
	exited  chan struct{}
}

var env struct {
	repo      string
	bootstrap string
	kafkaDir  string
	bin       string
	socket    string // the shared test daemon's
	main      *daemonProc
	setupErr  error
}

var topicSeq atomic.Int64

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	env.setupErr = setup()
	if env.setupErr != nil {
		fmt.Fprintf(os.Stderr, "kafkad integration tests cannot run: %v\n", env.setupErr)
	}
	code := m.Run()
	if d := env.main; d != nil {
		if err := d.stop(); err != nil {
			fmt.Fprintf(os.Stderr, "kafkad did not stop cleanly: %v\n--- daemon log ---\n%s\n", err, d.log())
			code = 1
		}
		if code == 0 {
			os.RemoveAll(d.dir)
		} else {
			fmt.Fprintf(os.Stderr, "daemon log kept in %s\n", d.logPath)
		}
	}
	return code
}

func setup() error {
	repo, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		return err
	}
	env.repo = repo
	env.bootstrap = os.Getenv("KAFKAD_TEST_BOOTSTRAP")
	env.kafkaDir = os.Getenv("KAFKAD_TEST_KAFKA_DIR")
	if env.bootstrap == "" || env.kafkaDir == "" {
		return errors.New("KAFKAD_TEST_BOOTSTRAP and KAFKAD_TEST_KAFKA_DIR must name the real Kafka test broker: " +
			"run the Go suite via `make test` (scripts/test.sh starts the broker), or start one with " +
			"`tests/kafka/cluster start --dir DIR` and set both variables")
	}
	env.bin = os.Getenv("KAFKAD_BIN")
	if env.bin == "" {
		env.bin = filepath.Join(repo, "build", "daemon", "kafkad")
	}
	if _, err := os.Stat(env.bin); err != nil {
		return fmt.Errorf("kafkad binary %s: %v (build it with `make build`, or set KAFKAD_BIN)", env.bin, err)
	}
	d, err := startDaemon("")
	if err != nil {
		return err
	}
	env.main = d
	env.socket = d.socket
	return nil
}

// startDaemon starts a kafkad on the test broker; extra is added to its
// [daemon] section.
func startDaemon(extra string) (*daemonProc, error) {
	dir, err := os.MkdirTemp("", "kafkad-go-")
	if err != nil {
		return nil, err
	}
	d := &daemonProc{dir: dir, socket: filepath.Join(dir, "k.sock"), logPath: filepath.Join(dir, "kafkad.log")}
	conf := filepath.Join(dir, "kafkad.conf")
	text := fmt.Sprintf("[daemon]\nsocket = %s\nlog_level = info\nshutdown_timeout_ms = 5000\nconsumer_linger_ms = 1000\n%s"+
		"[cluster main]\nbootstrap.servers = %s\n", d.socket, extra, env.bootstrap)
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		return nil, err
	}
	logf, err := os.Create(d.logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(env.bin, "-c", conf)
	cmd.Stdout = logf
	cmd.Stderr = logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("starting %s: %v", env.bin, err)
	}
	logf.Close()
	d.cmd = cmd
	d.exited = make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(d.exited)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-d.exited:
			return nil, fmt.Errorf("kafkad exited at startup (%v):\n%s", cmd.ProcessState, d.log())
		default:
		}
		if c, err := net.Dial("unix", d.socket); err == nil {
			c.Close()
			return d, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = cmd.Process.Kill()
	<-d.exited
	return nil, fmt.Errorf("kafkad did not listen on %s within 30s:\n%s", d.socket, d.log())
}

// stop sends SIGTERM and checks that the daemon exits cleanly.
func (d *daemonProc) stop() error {
	select {
	case <-d.exited:
		return fmt.Errorf("kafkad had exited during the tests: %v", d.cmd.ProcessState)
	default:
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(30 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.exited
		return errors.New("kafkad did not exit within 30s of SIGTERM")
	}
	if !d.cmd.ProcessState.Success() {
		return fmt.Errorf("kafkad exited with %v", d.cmd.ProcessState)
	}
	return nil
}

func (d *daemonProc) log() string {
	b, _ := os.ReadFile(d.logPath)
	s := string(b)
	if len(s) > 8000 {
		s = "...\n" + s[len(s)-8000:]
	}
	return s
}

// extraDaemon starts a daemon of the test's own (stopped at its end).
func extraDaemon(t testing.TB, extra string) *daemonProc {
	t.Helper()
	needDaemon(t)
	d, err := startDaemon(extra)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.stop(); err != nil {
			t.Errorf("%v\n%s", err, d.log())
		} else if !t.Failed() {
			os.RemoveAll(d.dir)
		} else {
			t.Logf("daemon log kept in %s", d.logPath)
		}
	})
	return d
}

// needDaemon fails the test when the harness could not start the daemon.
func needDaemon(t testing.TB) {
	t.Helper()
	if env.setupErr != nil {
		t.Fatalf("integration test needs the daemon on a real broker: %v", env.setupErr)
	}
	select {
	case <-env.main.exited:
		t.Fatalf("kafkad has exited (%v):\n%s", env.main.cmd.ProcessState, env.main.log())
	default:
	}
}

// dial connects to the test daemon; the client is closed at the test's end.
func dial(t testing.TB, opts ...Option) *Client {
	t.Helper()
	needDaemon(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := Dial(ctx, append([]Option{WithSocket(env.socket)}, opts...)...)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// createTopic creates a fresh topic with 4 partitions (auto-create is off
// on the test broker).
func createTopic(t testing.TB, prefix string) string {
	t.Helper()
	needDaemon(t)
	name := fmt.Sprintf("go-%s-%d-%d", prefix, os.Getpid(), topicSeq.Add(1))
	cmd := exec.Command(filepath.Join(env.repo, "tests", "kafka", "cluster"), "create-topic",
		"--dir", env.kafkaDir, name, "--partitions", "4")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("create-topic %s: %v\n%s", name, err, out)
	}
	return name
}

// testCtx is a context for one test step: a hang guard, not a time limit
// on the behaviour under test.
func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func uniq(prefix string) string {
	return fmt.Sprintf("%s-%d-%d", prefix, os.Getpid(), topicSeq.Add(1))
}

func TestHarnessEnv(t *testing.T) {
	needDaemon(t)
	if !strings.Contains(env.bootstrap, ":") {
		t.Fatalf("KAFKAD_TEST_BOOTSTRAP %q is not host:port", env.bootstrap)
	}
}
