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

var env struct {
	repo      string
	bootstrap string
	kafkaDir  string
	bin       string
	dir       string
	socket    string
	logPath   string
	daemon    *exec.Cmd
	exited    chan struct{}
	setupErr  error
}

var topicSeq atomic.Int64

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	env.setupErr = startDaemon()
	if env.setupErr != nil {
		fmt.Fprintf(os.Stderr, "kafkad integration tests cannot run: %v\n", env.setupErr)
	}
	code := m.Run()
	if env.daemon != nil {
		if err := stopDaemon(); err != nil {
			fmt.Fprintf(os.Stderr, "kafkad did not stop cleanly: %v\n--- daemon log ---\n%s\n", err, daemonLog())
			code = 1
		}
	}
	if env.dir != "" && code == 0 {
		os.RemoveAll(env.dir)
	} else if env.dir != "" {
		fmt.Fprintf(os.Stderr, "daemon log kept in %s\n", env.logPath)
	}
	return code
}

func startDaemon() error {
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
	env.dir, err = os.MkdirTemp("", "kafkad-go-")
	if err != nil {
		return err
	}
	env.socket = filepath.Join(env.dir, "k.sock")
	conf := filepath.Join(env.dir, "kafkad.conf")
	text := fmt.Sprintf("[daemon]\nsocket = %s\nlog_level = info\nshutdown_timeout_ms = 5000\nconsumer_linger_ms = 1000\n"+
		"[cluster main]\nbootstrap.servers = %s\n", env.socket, env.bootstrap)
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		return err
	}
	env.logPath = filepath.Join(env.dir, "kafkad.log")
	logf, err := os.Create(env.logPath)
	if err != nil {
		return err
	}
	cmd := exec.Command(env.bin, "-c", conf)
	cmd.Stdout = logf
	cmd.Stderr = logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("starting %s: %v", env.bin, err)
	}
	logf.Close()
	env.daemon = cmd
	env.exited = make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(env.exited)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-env.exited:
			return fmt.Errorf("kafkad exited at startup (%v):\n%s", cmd.ProcessState, daemonLog())
		default:
		}
		if c, err := net.Dial("unix", env.socket); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("kafkad did not listen on %s within 30s:\n%s", env.socket, daemonLog())
}

func stopDaemon() error {
	select {
	case <-env.exited:
		return fmt.Errorf("kafkad had exited during the tests: %v", env.daemon.ProcessState)
	default:
	}
	_ = env.daemon.Process.Signal(syscall.SIGTERM)
	select {
	case <-env.exited:
	case <-time.After(30 * time.Second):
		_ = env.daemon.Process.Kill()
		<-env.exited
		return errors.New("kafkad did not exit within 30s of SIGTERM")
	}
	if !env.daemon.ProcessState.Success() {
		return fmt.Errorf("kafkad exited with %v", env.daemon.ProcessState)
	}
	return nil
}

func daemonLog() string {
	b, _ := os.ReadFile(env.logPath)
	s := string(b)
	if len(s) > 8000 {
		s = "...\n" + s[len(s)-8000:]
	}
	return s
}

// needDaemon fails the test when the harness could not start the daemon.
func needDaemon(t testing.TB) {
	t.Helper()
	if env.setupErr != nil {
		t.Fatalf("integration test needs the daemon on a real broker: %v", env.setupErr)
	}
	select {
	case <-env.exited:
		t.Fatalf("kafkad has exited (%v):\n%s", env.daemon.ProcessState, daemonLog())
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
