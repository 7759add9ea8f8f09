package node

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/virtual-kubelet/virtual-kubelet/errdefs"
	"github.com/virtual-kubelet/virtual-kubelet/node/api"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
	utilexec "k8s.io/utils/exec"
)

// RunInContainer runs cmd inside a running container (`kubectl exec`) with nsenter, wired to the
// exec streams. A non-zero exit comes back as a CodeExitError, which the kubelet API turns into
// the NonZeroExitCode status; 128+n for a command killed by signal n. The command runs to its
// end even when the client goes away, as on a real node.
//
// Failure modes: an unknown pod is NotFound; a container with no running process, and a command
// that is not in the container, get containerd's wording (an InternalError status).
func (n *Runtime) RunInContainer(ctx context.Context, namespace, podName, container string, cmd []string, attach api.AttachIO) error {
	rt := n.lookup(namespace, podName)
	if rt == nil {
		return errdefs.NotFoundf("pod %s/%s is not on this node", namespace, podName)
	}
	rt.mu.Lock()
	s := rt.slots[container]
	rt.mu.Unlock()
	if s == nil {
		return fmt.Errorf("container not found (%q): it has no running process", container)
	}
	if len(cmd) == 0 {
		return fmt.Errorf("you must specify at least 1 command")
	}
	if s.image.Resolve(cmd[0], envPath(s.env)) == "" {
		return fmt.Errorf("%s", execNotFound(cmd[0], hexID()))
	}
	spec := execSpec{pid1: s.pid1, argv: cmd, env: s.env, chroot: s.image.Root != ""}
	if attach.Stdin() != nil {
		spec.stdin = attach.Stdin()
	}
	if w := attach.Stdout(); w != nil {
		spec.stdout = w
		defer w.Close()
	}
	if w := attach.Stderr(); w != nil {
		spec.stderr = w
		defer w.Close()
	}
	if attach.TTY() && spec.stderr == nil {
		spec.stderr = spec.stdout
	}
	exit, err := n.runExec(spec)
	if err != nil {
		return fmt.Errorf("failed to exec in container: %w", err)
	}
	if exit.Code != 0 {
		return utilexec.CodeExitError{
			Err:  fmt.Errorf("command '%s' exited with %d", strings.Join(cmd, " "), exit.Code),
			Code: int(exit.Code),
		}
	}
	return nil
}

// AttachToContainer is not served: containers run with their output going to their log.
func (n *Runtime) AttachToContainer(ctx context.Context, namespace, podName, container string, attach api.AttachIO) error {
	return errdefs.InvalidInput("attach is not supported by the harness node; use logs or exec")
}

// PortForward is not served: containers share the host's network, so connect to 127.0.0.1.
func (n *Runtime) PortForward(ctx context.Context, namespace, pod string, port int32, stream io.ReadWriteCloser) error {
	return errdefs.InvalidInput("port-forward is not supported by the harness node: containers share the host network")
}

// GetStatsSummary reports the node with no usage figures.
func (n *Runtime) GetStatsSummary(context.Context) (*statsv1alpha1.Summary, error) {
	return &statsv1alpha1.Summary{Node: statsv1alpha1.NodeStats{NodeName: n.cfg.NodeName}}, nil
}

// GetMetricsResource reports no metrics.
func (n *Runtime) GetMetricsResource(context.Context) ([]*dto.MetricFamily, error) {
	return nil, nil
}

// GetContainerLogs returns a container's output (stdout and stderr, appended across restarts).
// Tail, LimitBytes and Follow are honoured; Follow ends when the container is no longer
// running and its log has been read, or when the client goes away.
func (n *Runtime) GetContainerLogs(ctx context.Context, namespace, podName, container string, opts api.ContainerLogOpts) (io.ReadCloser, error) {
	rt := n.lookup(namespace, podName)
	if rt == nil {
		return nil, errdefs.NotFoundf("pod %s/%s is not on this node", namespace, podName)
	}
	path := rt.logPath(container)
	data, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	if opts.Tail > 0 {
		lines := bytes.SplitAfter(data, []byte("\n"))
		if len(lines) > 0 && len(lines[len(lines)-1]) == 0 {
			lines = lines[:len(lines)-1]
		}
		if len(lines) > opts.Tail {
			lines = lines[len(lines)-opts.Tail:]
		}
		data = bytes.Join(lines, nil)
	}
	if opts.LimitBytes > 0 && len(data) > opts.LimitBytes {
		data = data[:opts.LimitBytes]
	}
	if !opts.Follow {
		return io.NopCloser(bytes.NewReader(data)), nil
	}
	pr, pw := io.Pipe()
	go func() {
		w := bufio.NewWriter(pw)
		_, _ = w.Write(data)
		_ = w.Flush()
		offset := int64(0)
		if st, err := os.Stat(path); err == nil {
			offset = st.Size()
		}
		for {
			select {
			case <-ctx.Done():
				pw.Close()
				return
			case <-time.After(200 * time.Millisecond):
			}
			f, err := os.Open(path)
			if err == nil {
				if _, err := f.Seek(offset, io.SeekStart); err == nil {
					k, _ := io.Copy(pw, f)
					offset += k
				}
				f.Close()
			}
			rt.mu.Lock()
			_, running := rt.slots[container]
			rt.mu.Unlock()
			if !running {
				pw.Close()
				return
			}
		}
	}()
	return pr, nil
}
