package node

// Container processes: `unshare` makes each container's PID and mount namespace, `nsenter` runs
// exec'd commands inside it, and Pdeathsig ties both to this process.
//
// Every process is started from one goroutine locked to its OS thread (the spawner), because the
// kernel sends the parent-death signal when the *thread* that forked a child exits. When the node
// agent dies, every `unshare` gets SIGKILL, `--kill-child` SIGKILLs its PID 1, and the kernel kills
// the rest of that PID namespace.

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Tools are the util-linux programs containers are made with, resolved once at start.
type Tools struct {
	Unshare string
	Nsenter string
}

// FindTools looks unshare and nsenter up on PATH.
func FindTools() (Tools, error) {
	var t Tools
	var err error
	if t.Unshare, err = exec.LookPath("unshare"); err != nil {
		return t, fmt.Errorf("unshare (util-linux) is needed: %w", err)
	}
	if t.Nsenter, err = exec.LookPath("nsenter"); err != nil {
		return t, fmt.Errorf("nsenter (util-linux) is needed: %w", err)
	}
	if p, err := filepath.EvalSymlinks(t.Unshare); err == nil {
		t.Unshare = p
	}
	if p, err := filepath.EvalSymlinks(t.Nsenter); err == nil {
		t.Nsenter = p
	}
	return t, nil
}

// CheckPrivilege makes one PID namespace, so a node that cannot fails at start, not per pod.
func CheckPrivilege(t Tools) error {
	out, err := exec.Command(t.Unshare, "--pid", "--fork", "--mount-proc", "--kill-child", "--", "true").CombinedOutput()
	if err != nil {
		return fmt.Errorf("euid %d cannot make PID namespaces (`unshare --pid --fork --mount-proc true`: %v: %s); run as root",
			os.Geteuid(), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// spawner starts processes from one locked OS thread (see the file comment).
type spawner struct {
	reqs chan spawnReq
}

type spawnReq struct {
	cmd  *exec.Cmd
	done chan error
}

func newSpawner() *spawner {
	s := &spawner{reqs: make(chan spawnReq)}
	go func() {
		runtime.LockOSThread() // never unlocked: this thread lives as long as the process
		for r := range s.reqs {
			r.done <- r.cmd.Start()
		}
	}()
	return s
}

func (s *spawner) start(cmd *exec.Cmd) error {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	done := make(chan error, 1)
	s.reqs <- spawnReq{cmd: cmd, done: done}
	return <-done
}

// unshareSigkillQuirk is what util-linux 2.38's unshare prints (then exits 1) when its child died
// of SIGKILL: it cannot re-raise SIGKILL on itself. Later versions die of the signal instead.
const unshareSigkillQuirk = "unshare: sigprocmask unblock failed"

// Exit is how a container process ended, as Kubernetes reports it.
type Exit struct {
	// Code is the exit code (128 + signal for a death by signal).
	Code int32
	// Signal is the signal it died of, or 0.
	Signal int32
}

// launched is one running container: the unshare launcher and its child, the container's PID 1.
type launched struct {
	cmd      *exec.Cmd
	launcher int
	pid1     int
	log      *os.File
	stderr   *quirkWriter
	waitOnce sync.Once
	exit     Exit
	exited   chan struct{}
	// sigkilled is set once the agent has sent SIGKILL to PID 1 (which always kills it).
	sigkilled atomic.Bool
}

// quirkWriter appends the container's stderr to its log and drops (but notes) unshare's own
// SIGKILL message.
type quirkWriter struct {
	mu   sync.Mutex
	f    *os.File
	seen bool
}

func (w *quirkWriter) Write(p []byte) (int, error) {
	if strings.Contains(string(p), unshareSigkillQuirk) {
		w.mu.Lock()
		w.seen = true
		w.mu.Unlock()
		if strings.HasPrefix(string(p), unshareSigkillQuirk) {
			return len(p), nil
		}
	}
	return w.f.Write(p)
}

func (w *quirkWriter) sawQuirk() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.seen
}

type launchSpec struct {
	argv    []string
	env     []string
	root    string // chroot folder for rootfs: minimal images, or ""
	workdir string
	logPath string
	// targetPID, when set, is the PID 1 of the container whose PID namespace the process joins
	// (an ephemeral container with targetContainerName): see launch.
	targetPID int
}

// launch starts `unshare --pid --fork --mount-proc --kill-child [--root R] --wd W -- argv...` with
// stdout and stderr appended to the log file, and finds the container's PID 1.
//
// With spec.targetPID it starts `nsenter --target=T --pid -- unshare --mount --mount-proc [--root R]
// --wd W -- argv...` instead: nsenter's child is in T's PID namespace, unshare gives it a mount
// namespace of its own, chroots into the image's root and mounts a /proc of that PID namespace
// there, then execs argv (no fork: argv is nsenter's child). nsenter ends as that child does
// (by the same signal, if it was killed), so the exit reads as a container's.
func (n *Runtime) launch(spec launchSpec) (*launched, error) {
	log, err := os.OpenFile(spec.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	args := []string{"--pid", "--fork", "--mount-proc", "--kill-child"}
	program := n.tools.Unshare
	if spec.targetPID != 0 {
		program = n.tools.Nsenter
		args = []string{fmt.Sprintf("--target=%d", spec.targetPID), "--pid", "--", n.tools.Unshare, "--mount", "--mount-proc"}
	}
	if spec.root != "" {
		args = append(args, "--root="+spec.root)
	}
	args = append(args, "--wd="+spec.workdir, "--")
	args = append(args, spec.argv...)
	cmd := exec.Command(program, args...)
	cmd.Env = spec.env
	cmd.Stdout = log
	qw := &quirkWriter{f: log}
	cmd.Stderr = qw
	if err := n.spawner.start(cmd); err != nil {
		log.Close()
		return nil, fmt.Errorf("starting unshare: %w", err)
	}
	l := &launched{cmd: cmd, launcher: cmd.Process.Pid, log: log, stderr: qw, exited: make(chan struct{})}
	go l.reap()
	l.pid1 = findPID1(l.launcher, l.exited, n.tools.Unshare, n.tools.Nsenter)
	return l, nil
}

func (l *launched) reap() {
	_ = l.cmd.Wait() // the exit is read from ProcessState below
	l.log.Close()
	st := l.cmd.ProcessState
	switch {
	case st == nil:
		l.exit = Exit{Code: 255}
	case st.Sys().(syscall.WaitStatus).Signaled():
		sig := st.Sys().(syscall.WaitStatus).Signal()
		l.exit = Exit{Code: 128 + int32(sig), Signal: int32(sig)}
	// unshare exits 1 when its child died of SIGKILL; its message is the usual evidence, but a
	// SIGKILL the agent sent itself is proof enough (the message can arrive split or joined
	// with other output).
	case st.ExitCode() == 1 && (l.stderr.sawQuirk() || l.sigkilled.Load()):
		l.exit = Exit{Code: 137, Signal: int32(syscall.SIGKILL)}
	default:
		l.exit = Exit{Code: int32(st.ExitCode())}
	}
	close(l.exited)
}

// wait blocks until the container has ended and says how.
func (l *launched) wait() Exit {
	<-l.exited
	return l.exit
}

// signal sends sig to the container's PID 1 from outside its namespace (so the kernel's PID 1
// rule applies as on a real node: SIGTERM only with a handler, SIGKILL always).
func (l *launched) signal(sig syscall.Signal) {
	target := l.pid1
	if target == 0 {
		target = l.launcher
	}
	if sig == syscall.SIGKILL {
		l.sigkilled.Store(true)
	}
	_ = syscall.Kill(target, sig)
}

// findPID1 waits (up to 5 s) for the launcher's child to have exec'd the container command:
// a child whose executable is none of the launchers'.
func findPID1(launcher int, exited <-chan struct{}, launchers ...string) int {
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		for _, c := range childrenOf(launcher) {
			exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", c))
			if err == nil && !slices.Contains(launchers, exe) {
				return c
			}
		}
		select {
		case <-exited:
			return 0
		case <-time.After(5 * time.Millisecond):
		}
	}
	return 0
}

// childrenOf lists the children of pid (from /proc/PID/task/PID/children).
func childrenOf(pid int) []int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		return nil
	}
	var out []int
	for _, w := range strings.Fields(string(data)) {
		if p, err := strconv.Atoi(w); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// execSpec is what to run inside a running container.
type execSpec struct {
	pid1   int
	argv   []string
	env    []string
	chroot bool
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
}

// execDrain is how long output is still read after an exec'd command exited (a background
// process may hold the streams open).
const execDrain = 2 * time.Second

// runExec runs `nsenter --target PID1 --pid --mount [--root] --wd -- argv...` wired to the
// streams and returns its exit (128+n for a death by signal n).
func (n *Runtime) runExec(spec execSpec) (Exit, error) {
	args := []string{fmt.Sprintf("--target=%d", spec.pid1), "--pid", "--mount"}
	if spec.chroot {
		args = append(args, "--root")
	}
	args = append(args, "--wd", "--")
	args = append(args, spec.argv...)
	cmd := exec.Command(n.tools.Nsenter, args...)
	cmd.Env = spec.env
	if spec.stdin != nil {
		cmd.Stdin = spec.stdin
	}
	if spec.stdout != nil {
		cmd.Stdout = spec.stdout
	}
	if spec.stderr != nil {
		cmd.Stderr = spec.stderr
	}
	cmd.WaitDelay = execDrain
	if err := n.spawner.start(cmd); err != nil {
		return Exit{}, err
	}
	err := cmd.Wait()
	st := cmd.ProcessState
	if st == nil {
		return Exit{}, err
	}
	if err != nil && !errors.Is(err, exec.ErrWaitDelay) {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			return Exit{}, err
		}
	}
	ws := st.Sys().(syscall.WaitStatus)
	if ws.Signaled() {
		return Exit{Code: 128 + int32(ws.Signal()), Signal: int32(ws.Signal())}, nil
	}
	return Exit{Code: int32(ws.ExitStatus())}, nil
}
