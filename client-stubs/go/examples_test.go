package kafkad

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func goTool(t *testing.T) string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	p := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("no go command to build the examples with: %v", err)
	}
	return p
}

// TestExamples builds examples/producer and examples/consumer and runs them
// against the test daemon: the producer sends 100 messages, the consumer
// (a consumer group) reads them back.
func TestExamples(t *testing.T) {
	t.Parallel()
	topic := createTopic(t, "examples")
	bin := t.TempDir()
	build := exec.Command(goTool(t), "build", "-buildvcs=false", "-o", bin, "./examples/producer", "./examples/consumer")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	run := func(name string, args ...string) string {
		cmd := exec.CommandContext(testCtx(t), filepath.Join(bin, name), args...)
		cmd.Env = append(os.Environ(), "KAFKAD_SOCKET="+env.socket)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
		return string(out)
	}
	out := run("producer", "-topic", topic, "-n", "100")
	if !strings.Contains(out, "produced 100 messages to "+topic+": 100 delivered, 0 failed") {
		t.Fatalf("producer output:\n%s", out)
	}
	out = run("consumer", "-topic", topic, "-group", uniq("go-example"), "-n", "100")
	if !strings.Contains(out, "consumed 100 messages from "+topic) || strings.Count(out, "value=\"message ") != 100 {
		t.Fatalf("consumer output:\n%s", out)
	}
}
