// Package node is the harness's node agent behind virtual-kubelet: it runs each pod's containers
// as real process trees, each in its own PID and mount namespace, and writes their status to the
// API server as the kubelet does (a strategic-merge patch of pods/status carrying the pod's UID).
//
// Order of a pod's life: regular init containers run one at a time to completion; native
// sidecars (init containers with restartPolicy: Always) start in their place and keep running
// (restarted when they exit); then every regular container starts. When every regular container
// has finished for good, the sidecars are stopped in reverse order (SIGTERM, then SIGKILL after
// the grace period, at least 2 s each), and the phase becomes Succeeded or Failed.
//
// Deleting a pod stops its regular containers together, then its sidecars in reverse order, each
// with SIGTERM and, after the grace period, SIGKILL; virtual-kubelet then removes the object.
//
// Signals come from outside the container's PID namespace, so the kernel's rule for PID 1 holds
// as on a real node: SIGTERM reaches PID 1 only if it has a handler; SIGKILL always does.
//
// A pod update that changes a running container's image restarts it from the new image, as the
// kubelet restarts a container whose spec hash changed (supervise, in lifecycle.go); a new
// ephemeral container runs once in its target container's PID namespace (ephemeral.go).
// Every pod reports Config.PodIP (127.0.0.2) as its IP and the node's address as its hostIP.
package node

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/errdefs"
	vklog "github.com/virtual-kubelet/virtual-kubelet/log"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/record"

	"example.invalid/sidekill/tests/k8s-harness/internal/images"
)

// Config is what a Runtime needs.
type Config struct {
	// NodeName is the node's name; pods carry it in spec.nodeName.
	NodeName string
	// NodeIP is reported as the pods' hostIP.
	NodeIP string
	// PodIP is reported as every pod's podIP and podIPs. Default 127.0.0.2: the containers share
	// the machine's network, and a loopback address other than 127.0.0.1 lets a server tell a
	// caller inside the pod (which connects from 127.0.0.1) from one that came through the pod
	// IP (see docs/k8s-harness.md, "Loopback").
	PodIP string
	// StateDir holds the materialised images and each pod's container logs.
	StateDir string
	// Images is the stand-in image catalogue.
	Images *images.Catalogue
	// Tools are unshare and nsenter.
	Tools Tools
	// Client writes pod status (as the node's identity).
	Client kubernetes.Interface
	// Recorder records the kubelet's events (Pulled, Created, Started, Killing, ...), or nil.
	Recorder record.EventRecorder
	// Backoff is the first restart delay; it doubles up to 8 times that. Default 1 s.
	Backoff time.Duration
	// Prepare, when set, is called once per container of a starting pod with the image Images
	// found, and returns the image to run it from; it may set env entries on c (the pod is a
	// copy). An error leaves the container waiting (CreateContainerConfigError), as a kubelet
	// that cannot mount a volume does. The node uses it to give OCI images a service-account
	// identity (tests/k8s-harness/identity.go).
	Prepare func(pod *corev1.Pod, c *corev1.Container, img *images.Image) (*images.Image, error)
}

// DefaultPodIP is Config.PodIP's default.
const DefaultPodIP = "127.0.0.2"

// Runtime runs the pods bound to this node. It implements virtual-kubelet's Provider.
type Runtime struct {
	cfg     Config
	tools   Tools
	spawner *spawner

	mu   sync.Mutex
	pods map[string]*podRT
}

// New makes a Runtime.
func New(cfg Config) *Runtime {
	if cfg.Backoff == 0 {
		cfg.Backoff = time.Second
	}
	if cfg.Recorder == nil {
		cfg.Recorder = &record.FakeRecorder{}
	}
	if cfg.PodIP == "" {
		cfg.PodIP = DefaultPodIP
	}
	return &Runtime{cfg: cfg, tools: cfg.Tools, spawner: newSpawner(), pods: map[string]*podRT{}}
}

// slot is what a running container offers to exec.
type slot struct {
	pid1     int
	launcher int
	image    *images.Image
	env      []string
	id       string
}

// podRT is one pod's runtime state.
type podRT struct {
	key string
	dir string

	mu         sync.Mutex
	pod        *corev1.Pod // spec and metadata as last given; status is ours
	slots      map[string]*slot
	sups       map[string]*supervisor // the regular and init containers' supervisors, by name
	terminal   bool                   // no container will run again: the phase may turn terminal
	deleteReq  chan struct{}
	deleteOnce sync.Once
	grace      time.Duration
	killNow    chan struct{} // closed when a deletion with grace 0 follows a graceful one
	killOnce   sync.Once
	done       chan struct{}

	// Ephemeral containers (ephemeral.go): started once each; stopped with the pod.
	ephemeralStarted map[string]bool
	ephemeralClosed  bool // no ephemeral container starts any more (the pod is ending)
	ephemeralStop    chan struct{}
	ephemeralWG      sync.WaitGroup

	written corev1.PodStatus // the status last written to the API
	dirty   chan struct{}
	gone    chan struct{}
}

func podKey(namespace, name string) string { return namespace + "/" + name }

func hexID() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (rt *podRT) requestDelete(grace time.Duration) {
	first := false
	rt.deleteOnce.Do(func() {
		first = true
		rt.mu.Lock()
		rt.grace = grace
		rt.mu.Unlock()
		close(rt.deleteReq)
	})
	if !first && grace == 0 {
		rt.killOnce.Do(func() { close(rt.killNow) })
	}
}

func (rt *podRT) deleteGrace() time.Duration {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return rt.grace
}

// update changes the status with f, recomputes phase and conditions, and schedules a patch.
func (rt *podRT) update(f func(st *corev1.PodStatus)) {
	rt.mu.Lock()
	f(&rt.pod.Status)
	recompute(&rt.pod.Spec, &rt.pod.Status, rt.terminal)
	rt.mu.Unlock()
	select {
	case rt.dirty <- struct{}{}:
	default:
	}
}

func (rt *podRT) setContainer(name string, init bool, f func(cs *corev1.ContainerStatus)) {
	rt.update(func(st *corev1.PodStatus) {
		list := st.ContainerStatuses
		if init {
			list = st.InitContainerStatuses
		}
		if cs := findStatus(list, name); cs != nil {
			f(cs)
		}
	})
}

func (rt *podRT) snapshot() *corev1.Pod {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return rt.pod.DeepCopy()
}

// statusWriter patches pods/status whenever the status changed, until the pod is forgotten, as
// the kubelet's status manager does: a strategic-merge patch from the status last written to the
// new one (so cleared fields are cleared), with the pod's UID as a precondition.
func (n *Runtime) statusWriter(rt *podRT) {
	ctx := context.Background()
	flush := func() bool {
		p := rt.snapshot()
		rt.mu.Lock()
		old := *rt.written.DeepCopy()
		rt.mu.Unlock()
		patch, unchanged, err := statusPatch(p.UID, old, p.Status)
		if err != nil || unchanged {
			return true
		}
		updated, err := n.cfg.Client.CoreV1().Pods(p.Namespace).Patch(ctx, p.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "status")
		switch {
		case err == nil:
			rt.mu.Lock()
			rt.written = updated.Status
			rt.mu.Unlock()
			return true
		case apierrors.IsNotFound(err), apierrors.IsConflict(err):
			// Gone, or replaced by a new pod of the same name (the UID precondition failed).
			return true
		case apierrors.IsInvalid(err):
			vklog.G(ctx).WithError(err).WithField("pod", rt.key).Error("pod status rejected")
			return true
		default:
			vklog.G(ctx).WithError(err).WithField("pod", rt.key).Warn("patching pod status; retrying")
			return false
		}
	}
	for {
		select {
		case <-rt.dirty:
			for !flush() {
				select {
				case <-time.After(200 * time.Millisecond):
				case <-rt.gone:
					return
				}
			}
		case <-rt.gone:
			select {
			case <-rt.dirty:
				flush()
			default:
			}
			return
		}
	}
}

// statusPatch is the kubelet's pods/status patch (k8s.io/kubernetes/pkg/util/pod): a two-way
// strategic merge patch from old to new, with the UID as a precondition.
func statusPatch(uid types.UID, old, new corev1.PodStatus) ([]byte, bool, error) {
	oldData, err := json.Marshal(corev1.Pod{Status: old})
	if err != nil {
		return nil, false, err
	}
	newData, err := json.Marshal(corev1.Pod{ObjectMeta: metav1.ObjectMeta{UID: uid}, Status: new})
	if err != nil {
		return nil, false, err
	}
	patch, err := strategicpatch.CreateTwoWayMergePatch(oldData, newData, corev1.Pod{})
	if err != nil {
		return nil, false, err
	}
	return patch, bytes.Equal(patch, []byte(fmt.Sprintf(`{"metadata":{"uid":%q}}`, uid))), nil
}

func (n *Runtime) event(rt *podRT, typ, reason, fieldPath, format string, args ...any) {
	p := rt.snapshot()
	ref := &corev1.ObjectReference{
		Kind: "Pod", APIVersion: "v1", Namespace: p.Namespace, Name: p.Name, UID: p.UID,
		ResourceVersion: p.ResourceVersion, FieldPath: fieldPath,
	}
	n.cfg.Recorder.Eventf(ref, typ, reason, format, args...)
}

// CreatePod starts a pod's containers (in the background) and returns.
func (n *Runtime) CreatePod(ctx context.Context, pod *corev1.Pod) error {
	key := podKey(pod.Namespace, pod.Name)
	n.mu.Lock()
	if old, ok := n.pods[key]; ok {
		n.mu.Unlock()
		if old.pod.UID == pod.UID {
			return nil
		}
		// A new pod of the same name: the old one must go first.
		old.requestDelete(0)
		<-old.done
		n.forget(old)
		n.mu.Lock()
	}
	dir := filepath.Join(n.cfg.StateDir, "pods", fmt.Sprintf("%s_%s_%s", pod.Namespace, pod.Name, pod.UID))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		n.mu.Unlock()
		return err
	}
	p := pod.DeepCopy()
	p.Status = corev1.PodStatus{Phase: corev1.PodPending, QOSClass: pod.Status.QOSClass}
	// Ephemeral containers already in the spec start with the pod (ephemeral.go).
	p.Spec.EphemeralContainers = nil
	rt := &podRT{
		key: key, dir: dir, pod: p, slots: map[string]*slot{}, sups: map[string]*supervisor{},
		ephemeralStarted: map[string]bool{}, ephemeralStop: make(chan struct{}),
		written:   *pod.Status.DeepCopy(),
		deleteReq: make(chan struct{}), killNow: make(chan struct{}), done: make(chan struct{}),
		dirty: make(chan struct{}, 1), gone: make(chan struct{}),
	}
	n.pods[key] = rt
	n.mu.Unlock()
	go n.statusWriter(rt)
	go n.run(rt)
	n.addEphemeral(rt, pod.Spec.EphemeralContainers)
	return nil
}

// UpdatePod takes what an update of a running pod may change (ValidatePodUpdate lets images,
// activeDeadlineSeconds, tolerations, labels and annotations change; the ephemeralcontainers
// subresource adds ephemeral containers):
//   - metadata and the other fields are recorded;
//   - a container (or native sidecar) whose image changed is restarted from the new image, as
//     the kubelet restarts a container whose spec hash changed (see supervise);
//   - a new ephemeral container is started once (see ephemeral.go).
//
// A pod of the same name with another UID replaces the old one (which is stopped at once).
func (n *Runtime) UpdatePod(ctx context.Context, pod *corev1.Pod) error {
	rt := n.lookup(pod.Namespace, pod.Name)
	if rt == nil || rt.pod.UID != pod.UID {
		return n.CreatePod(ctx, pod)
	}
	var changed []*supervisor
	rt.mu.Lock()
	rt.pod.Labels = pod.Labels
	rt.pod.Annotations = pod.Annotations
	rt.pod.ResourceVersion = pod.ResourceVersion
	newImages := func(have, want []corev1.Container) {
		for i := range have {
			if i < len(want) && want[i].Name == have[i].Name && want[i].Image != have[i].Image {
				have[i].Image = want[i].Image
				if s := rt.sups[have[i].Name]; s != nil {
					changed = append(changed, s)
				}
			}
		}
	}
	newImages(rt.pod.Spec.Containers, pod.Spec.Containers)
	newImages(rt.pod.Spec.InitContainers, pod.Spec.InitContainers)
	rt.pod.Spec.ActiveDeadlineSeconds = pod.Spec.ActiveDeadlineSeconds
	rt.pod.Spec.Tolerations = pod.Spec.Tolerations
	rt.mu.Unlock()
	for _, s := range changed {
		s.notify()
	}
	n.addEphemeral(rt, pod.Spec.EphemeralContainers)
	return nil
}

// DeletePod stops the pod's containers in the background (regular ones, then sidecars) within
// the deletion's grace period, and forgets the pod once they have all ended and its last status
// is written. Called again (virtual-kubelet does, e.g. when the object is gone) it only shortens
// the wait: a pod the API no longer has is stopped with SIGKILL now.
func (n *Runtime) DeletePod(ctx context.Context, pod *corev1.Pod) error {
	rt := n.lookup(pod.Namespace, pod.Name)
	if rt == nil || rt.pod.UID != pod.UID {
		return errdefs.NotFoundf("pod %s/%s (%s) is not on this node", pod.Namespace, pod.Name, pod.UID)
	}
	grace := int64(30)
	if pod.Spec.TerminationGracePeriodSeconds != nil {
		grace = *pod.Spec.TerminationGracePeriodSeconds
	}
	if pod.DeletionGracePeriodSeconds != nil {
		grace = *pod.DeletionGracePeriodSeconds
	}
	if pod.DeletionTimestamp == nil || grace < 0 {
		grace = 0
	}
	rt.mu.Lock()
	if pod.DeletionTimestamp != nil && rt.pod.DeletionTimestamp == nil {
		rt.pod.DeletionTimestamp = pod.DeletionTimestamp
		rt.pod.DeletionGracePeriodSeconds = pod.DeletionGracePeriodSeconds
	}
	rt.mu.Unlock()
	rt.requestDelete(time.Duration(grace) * time.Second)
	go func() {
		<-rt.done
		n.forget(rt)
	}()
	return nil
}

func (n *Runtime) forget(rt *podRT) {
	n.mu.Lock()
	if n.pods[rt.key] == rt {
		delete(n.pods, rt.key)
	}
	n.mu.Unlock()
	select {
	case <-rt.gone:
	default:
		close(rt.gone)
	}
}

func (n *Runtime) lookup(namespace, name string) *podRT {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.pods[podKey(namespace, name)]
}

// GetPod returns the pod as this node sees it.
func (n *Runtime) GetPod(ctx context.Context, namespace, name string) (*corev1.Pod, error) {
	rt := n.lookup(namespace, name)
	if rt == nil {
		return nil, errdefs.NotFoundf("pod %s/%s is not on this node", namespace, name)
	}
	return rt.snapshot(), nil
}

// GetPodStatus returns the pod's status as this node sees it.
func (n *Runtime) GetPodStatus(ctx context.Context, namespace, name string) (*corev1.PodStatus, error) {
	p, err := n.GetPod(ctx, namespace, name)
	if err != nil {
		return nil, err
	}
	return &p.Status, nil
}

// GetPods lists the pods on this node.
func (n *Runtime) GetPods(ctx context.Context) ([]*corev1.Pod, error) {
	n.mu.Lock()
	rts := make([]*podRT, 0, len(n.pods))
	for _, rt := range n.pods {
		rts = append(rts, rt)
	}
	n.mu.Unlock()
	out := make([]*corev1.Pod, 0, len(rts))
	for _, rt := range rts {
		out = append(out, rt.snapshot())
	}
	sort.Slice(out, func(i, j int) bool {
		return podKey(out[i].Namespace, out[i].Name) < podKey(out[j].Namespace, out[j].Name)
	})
	return out, nil
}

// NotifyPods is accepted and unused: this node writes status itself, as a patch of
// pods/status (virtual-kubelet's own path sends the whole object, which would also overwrite
// labels and annotations that others patched meanwhile).
func (n *Runtime) NotifyPods(ctx context.Context, _ func(*corev1.Pod)) {}

// Shutdown SIGKILLs every container and waits (up to limit) for the pods to record it.
func (n *Runtime) Shutdown(limit time.Duration) {
	n.mu.Lock()
	rts := make([]*podRT, 0, len(n.pods))
	for _, rt := range n.pods {
		rts = append(rts, rt)
	}
	n.mu.Unlock()
	deadline := time.After(limit)
	for _, rt := range rts {
		rt.requestDelete(0)
		rt.mu.Lock()
		for _, s := range rt.slots {
			_ = syscall.Kill(s.pid1, syscall.SIGKILL)
		}
		rt.mu.Unlock()
	}
	for _, rt := range rts {
		select {
		case <-rt.done:
		case <-deadline:
			return
		}
	}
}

// restart says when a container runs again after it ended, as the kubelet decides it
// (k8s.io/kubernetes v1.37.2 pkg/kubelet/container/helpers.go ShouldContainerBeRestarted: Never
// never, OnFailure unless the exit code is 0, Always always). While it backs off the container is
// Waiting/CrashLoopBackOff with doBackOff's message (pkg/kubelet/kuberuntime/kuberuntime_manager.go),
// its end kept in lastState, and restartCount grows when the next instance starts. The kubelet
// backs off from 10 s doubling to MaxCrashLoopBackOff, 5 min (pkg/kubelet/kubelet.go); this
// node from Config.Backoff (1 s) doubling to 8 times that, so tests see a restart in seconds.
type restart int

const (
	restartNever restart = iota
	restartOnFailure
	restartAlways
)

func restartOf(p corev1.RestartPolicy) restart {
	switch p {
	case corev1.RestartPolicyNever:
		return restartNever
	case corev1.RestartPolicyOnFailure:
		return restartOnFailure
	default:
		return restartAlways
	}
}

func (r restart) again(code int32) bool {
	return r == restartAlways || (r == restartOnFailure && code != 0)
}
