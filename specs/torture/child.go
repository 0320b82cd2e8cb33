//go:build linux

package torture

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

// The environment of a child process: the role it plays and its arguments
// as JSON.
const (
	childEnv = "HICACHE_TORTURE_CHILD"
	argsEnv  = "HICACHE_TORTURE_ARGS"
)

// readyLine is what a child prints on stdout once its store is open.
const readyLine = "ready"

// roles are the child mains, by the value of $HICACHE_TORTURE_CHILD. Each
// decodes its arguments, prints readyLine when its store is open, and
// returns the result the parent decodes from its last line of output.
var roles = map[string]func(args []byte) (any, error){
	"crash":  crashChild,
	"procs":  procsChild,
	"nofile": nofileChild,
	"churn":  churnChild,
}

// The test binary runs a child instead of the suite when $HICACHE_TORTURE_CHILD
// names one: before any flag is parsed, and without Ginkgo.
func init() {
	role := os.Getenv(childEnv)
	if role == "" {
		return
	}
	run, ok := roles[role]
	if !ok {
		fmt.Fprintf(os.Stderr, "torture: unknown child %q\n", role)
		os.Exit(2)
	}
	res, err := run([]byte(os.Getenv(argsEnv)))
	if err != nil {
		fmt.Fprintf(os.Stderr, "torture: child %s: %v\n", role, err)
		os.Exit(1)
	}
	out, err := json.Marshal(res)
	if err != nil {
		fmt.Fprintf(os.Stderr, "torture: child %s: %v\n", role, err)
		os.Exit(1)
	}
	fmt.Printf("%s\n", out)
	os.Exit(0)
}

// signalReady tells the parent that the child's store is open.
func signalReady() { fmt.Println(readyLine) }

// syncBuffer is a bytes.Buffer safe for one writer and concurrent readers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// child is a running child process.
type child struct {
	role   string
	cmd    *exec.Cmd
	ready  chan struct{} // closed when the child prints readyLine
	lines  chan string   // every other line of stdout; closed at EOF
	stderr syncBuffer
	done   chan struct{} // closed once the process has been waited for
	err    error         // its exit, once done
}

// startChild starts the test binary as the child role with args, encoded as
// JSON. The child is killed when the spec ends, if still running.
func startChild(role string, args any) *child {
	GinkgoHelper()
	exe, err := os.Executable()
	Expect(err).NotTo(HaveOccurred())
	enc, err := json.Marshal(args)
	Expect(err).NotTo(HaveOccurred())
	c := &child{role: role, ready: make(chan struct{}), lines: make(chan string, 16), done: make(chan struct{})}
	c.cmd = exec.Command(exe)
	c.cmd.Env = append(os.Environ(), childEnv+"="+role, argsEnv+"="+string(enc))
	c.cmd.Stderr = &c.stderr
	out, err := c.cmd.StdoutPipe()
	Expect(err).NotTo(HaveOccurred())
	Expect(c.cmd.Start()).To(Succeed())
	go c.read(out)
	DeferCleanup(func() {
		_ = c.cmd.Process.Kill()
		<-c.done
	})
	return c
}

// read follows the child's stdout, then waits for the process.
func (c *child) read(out io.Reader) {
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	ready := false
	for sc.Scan() {
		if line := sc.Text(); line == readyLine && !ready {
			ready = true
			close(c.ready)
		} else {
			c.lines <- line
		}
	}
	close(c.lines)
	c.err = c.cmd.Wait()
	close(c.done)
}

// waitReady waits up to d for the child to print readyLine; it reports
// false if the child exited first or the time ran out.
func (c *child) waitReady(d time.Duration) bool {
	select {
	case <-c.ready:
		return true
	case <-c.done:
	case <-time.After(d):
	}
	return false
}

// kill sends SIGKILL and waits for the child to die. It reports whether the
// kill found the child running (and not already exited).
func (c *child) kill() bool {
	GinkgoHelper()
	_ = c.cmd.Process.Signal(syscall.SIGKILL)
	<-c.done
	c.checkStderr()
	ws, ok := c.cmd.ProcessState.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
}

// checkStderr fails the spec when the child reported a data race or a
// panic, even when it was killed afterwards.
func (c *child) checkStderr() {
	GinkgoHelper()
	e := c.stderr.String()
	for _, bad := range []string{"DATA RACE", "panic:", "fatal error:"} {
		Expect(e).NotTo(ContainSubstring(bad), "child %s wrote to stderr:\n%s", c.role, e)
	}
}

// result waits up to d for the child to exit and decodes its last line of
// output into res. A child that fails or outlives d fails the spec.
func (c *child) result(d time.Duration, res any) {
	GinkgoHelper()
	var last string
	timeout := time.After(d)
	for open := true; open; {
		select {
		case line, ok := <-c.lines:
			if ok {
				last = line
			}
			open = ok
		case <-timeout:
			Fail(fmt.Sprintf("child %s still running after %s; stderr:\n%s", c.role, d, c.stderr.String()))
		}
	}
	<-c.done
	c.checkStderr()
	Expect(c.err).NotTo(HaveOccurred(), "child %s failed; stderr:\n%s", c.role, c.stderr.String())
	Expect(json.Unmarshal([]byte(strings.TrimSpace(last)), res)).To(Succeed(), "child %s printed %q", c.role, last)
}
