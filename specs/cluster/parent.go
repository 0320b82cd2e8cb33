package cluster

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

// nodeProc is the parent's handle on one node process.
type nodeProc struct {
	id  int
	dir string
	cmd *exec.Cmd
	in  io.WriteCloser

	mu    sync.Mutex
	next  int
	calls map[int]chan reply
	gone  error // why the node's output ended, once it has
	ended chan struct{}
}

// envSSH holds the command, with options, that starts a node on another
// host: "ssh" when unset.
const envSSH = "HICACHE_CLUSTER_SSH"

// startNode starts node id on dir: the test binary again, with envNode set.
// With host set, the node runs there through ssh, as exe, a path on host.
func startNode(id int, host, dir, exe string) *nodeProc {
	GinkgoHelper()
	p := &nodeProc{id: id, dir: dir, calls: map[int]chan reply{}, ended: make(chan struct{})}
	env := []string{envNode + "=" + strconv.Itoa(id), envDir + "=" + dir}
	if host == "" {
		p.cmd = exec.Command(exe)
		p.cmd.Env = append(os.Environ(), env...)
	} else {
		// The binary was copied through another mount a moment ago: wait
		// up to seenBound for this host's mount to show it.
		script := fmt.Sprintf("for i in $(seq %d); do [ -x %s ] && break; sleep 0.1; done; exec env %s %s",
			int(seenBound/(100*time.Millisecond)), shellQuote(exe), shellQuote(env[0])+" "+shellQuote(env[1]), shellQuote(exe))
		ssh := strings.Fields(os.Getenv(envSSH))
		if len(ssh) == 0 {
			ssh = []string{"ssh"}
		}
		p.cmd = exec.Command(ssh[0], append(ssh[1:], "-T", "-o", "BatchMode=yes", host, script)...)
	}
	var err error
	p.cmd.Stderr = GinkgoWriter
	p.in, err = p.cmd.StdinPipe()
	Expect(err).NotTo(HaveOccurred())
	out, err := p.cmd.StdoutPipe()
	Expect(err).NotTo(HaveOccurred())
	Expect(p.cmd.Start()).To(Succeed())
	go p.readLoop(out)
	return p
}

// readLoop stamps each line from the node with the parent's clock and hands
// it to the call it belongs to.
func (p *nodeProc) readLoop(out io.Reader) {
	dec := json.NewDecoder(bufio.NewReader(out))
	var err error
	for {
		var r reply
		if err = dec.Decode(&r); err != nil {
			break
		}
		r.at = time.Now()
		p.mu.Lock()
		ch := p.calls[r.ID]
		if r.Done {
			delete(p.calls, r.ID)
		}
		p.mu.Unlock()
		if ch != nil {
			ch <- r
		}
	}
	p.mu.Lock()
	p.gone = fmt.Errorf("cluster: node %d ended: %v", p.id, err)
	for id, ch := range p.calls {
		ch <- reply{ID: id, Done: true, Err: p.gone.Error()}
		delete(p.calls, id)
	}
	p.mu.Unlock()
	close(p.ended)
}

// call is a request in progress on one node.
type call struct {
	p    *nodeProc
	op   string
	ch   chan reply
	last reply
}

// start sends r to the node and returns the call, whose replies come
// through next and wait.
func (p *nodeProc) start(r request) *call {
	GinkgoHelper()
	p.mu.Lock()
	p.next++
	r.ID = p.next
	ch := make(chan reply, 4096)
	gone := p.gone
	if gone == nil {
		p.calls[r.ID] = ch
	}
	p.mu.Unlock()
	Expect(gone).NotTo(HaveOccurred())
	b, err := json.Marshal(r)
	Expect(err).NotTo(HaveOccurred())
	_, err = p.in.Write(append(b, '\n'))
	Expect(err).NotTo(HaveOccurred(), "cluster: writing to node %d", p.id)
	return &call{p: p, op: r.Op, ch: ch}
}

// next returns the call's next event or its final reply, failing the spec
// after limit.
func (c *call) next(limit time.Duration) reply {
	GinkgoHelper()
	select {
	case r := <-c.ch:
		if r.Done {
			c.last = r
		}
		return r
	case <-time.After(limit):
		Fail(fmt.Sprintf("cluster: node %d sent nothing for %s in %s", c.p.id, limit, c.op))
	}
	return reply{}
}

// event waits for the call's event name, failing the spec if the call ends
// first.
func (c *call) event(name string, limit time.Duration) reply {
	GinkgoHelper()
	for {
		r := c.next(limit)
		Expect(r.Err).To(BeEmpty(), "node %d, %s", c.p.id, c.op)
		if r.Event == name {
			return r
		}
		Expect(r.Done).To(BeFalse(), "node %d ended %s without sending %q", c.p.id, c.op, name)
	}
}

// wait returns the call's final reply, passing each event to fn (if not
// nil), and fails the spec if the node reports an error.
func (c *call) wait(limit time.Duration, fn func(reply)) reply {
	GinkgoHelper()
	for {
		r := c.next(limit)
		if r.Done {
			Expect(r.Err).To(BeEmpty(), "node %d, %s", c.p.id, c.op)
			return r
		}
		if fn != nil {
			fn(r)
		}
	}
}

// do sends r and returns its final reply.
func (p *nodeProc) do(r request) reply {
	GinkgoHelper()
	return p.start(r).wait(r.For+time.Minute, nil)
}

// stop asks the node to quit and waits for it, killing it after a while.
func (p *nodeProc) stop() error {
	_ = p.in.Close() // EOF ends the node
	select {
	case <-p.ended:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
	}
	return p.cmd.Wait()
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
