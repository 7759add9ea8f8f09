package node

import (
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"example.invalid/sidekill/tests/k8s-harness/internal/images"
)

// supervisor runs one container, restarting it as its policy says, until it is done or stopped.
// It also restarts it when the pod's update changes the container's image (see swap).
type supervisor struct {
	c       corev1.Container
	init    bool
	restart restart
	image   *images.Image
	ref     string // the image field image was resolved for

	stopOnce  sync.Once
	stopCh    chan struct{}
	stopGrace time.Duration
	changed   chan struct{} // the pod's spec gave this container another image (buffered, 1)

	startOnce sync.Once
	started   chan struct{} // closed once the container has run
	done      chan struct{}
	lastCode  int32
}

func (s *supervisor) stop(grace time.Duration) {
	s.stopOnce.Do(func() {
		s.stopGrace = grace
		close(s.stopCh)
	})
}

func (s *supervisor) stopping() bool {
	select {
	case <-s.stopCh:
		return true
	default:
		return false
	}
}

// notify tells the supervisor that its container's spec changed (it compares the image itself).
func (s *supervisor) notify() {
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

func fieldPath(c *corev1.Container, init bool) string {
	if init {
		return "spec.initContainers{" + c.Name + "}"
	}
	return "spec.containers{" + c.Name + "}"
}

func argvOf(c *corev1.Container, img *images.Image) []string {
	argv := append([]string(nil), c.Command...)
	if len(argv) == 0 {
		argv = append(argv, img.Entrypoint...)
	}
	return append(argv, c.Args...)
}

// containerEnv is the image's environment, then HOSTNAME and HOME, then the container's own
// (virtual-kubelet has already resolved valueFrom references into values).
func containerEnv(p *corev1.Pod, c *corev1.Container, img *images.Image) []string {
	env := map[string]string{}
	for k, v := range img.Env {
		env[k] = v
	}
	env["HOSTNAME"] = p.Name
	env["HOME"] = "/root"
	order := make([]string, 0, len(env)+len(c.Env))
	for k := range env {
		order = append(order, k)
	}
	sort.Strings(order)
	for _, e := range c.Env {
		if _, ok := env[e.Name]; !ok {
			order = append(order, e.Name)
		}
		env[e.Name] = e.Value
	}
	out := make([]string, 0, len(order))
	for _, k := range order {
		out = append(out, k+"="+env[k])
	}
	return out
}

func envPath(env []string) string {
	for _, kv := range env {
		if strings.HasPrefix(kv, "PATH=") {
			return kv[len("PATH="):]
		}
	}
	return ""
}

// startSupervisor starts running c from img, resolved for the image field ref. It is
// registered on the pod, so that an update of the container's image reaches it.
func (n *Runtime) startSupervisor(rt *podRT, c corev1.Container, init bool, r restart, img *images.Image) *supervisor {
	s := &supervisor{
		c: c, init: init, restart: r, image: img, ref: c.Image,
		stopCh: make(chan struct{}), changed: make(chan struct{}, 1),
		started: make(chan struct{}), done: make(chan struct{}),
	}
	rt.mu.Lock()
	rt.sups[c.Name] = s
	rt.mu.Unlock()
	go n.supervise(rt, s)
	return s
}

// resolveImage finds img for the container's image field as the pod's spec now has it, when it
// is not the one the supervisor last resolved: a swapped image is "pulled" (looked up) before
// the new instance starts. false: the image cannot be had; the container is left Waiting
// (ErrImagePull, or CreateContainerConfigError when Prepare failed), with last as its lastState.
func (n *Runtime) resolveImage(rt *podRT, s *supervisor, last **corev1.ContainerStateTerminated) bool {
	cur := rt.specImage(s.c.Name, s.init)
	if cur == "" || cur == s.ref {
		return s.image != nil
	}
	fp := fieldPath(&s.c, s.init)
	c := s.c
	c.Image = cur
	s.ref, s.image = cur, nil
	fail := func(reason, msg string) bool {
		n.event(rt, corev1.EventTypeWarning, "Failed", fp, "%s", msg)
		rt.setContainer(c.Name, s.init, func(cs *corev1.ContainerStatus) {
			if *last != nil {
				cs.LastTerminationState = corev1.ContainerState{Terminated: *last}
				*last = nil
			}
			cs.Image = cur
			cs.ImageID = ""
			cs.State = waiting(reason, msg)
		})
		return false
	}
	img := n.cfg.Images.Find(cur)
	if img == nil {
		return fail("ErrImagePull", fmt.Sprintf("Failed to pull image %q: the harness node has no stand-in for it (see tests/images/images.yaml)", cur))
	}
	if n.cfg.Prepare != nil {
		prepared, err := n.cfg.Prepare(rt.snapshot(), &c, img)
		if err != nil {
			return fail("CreateContainerConfigError", "Error: "+err.Error())
		}
		img = prepared
	}
	s.c, s.image = c, img
	n.event(rt, corev1.EventTypeNormal, "Pulled", fp, "Container image %q already present on machine", cur)
	return true
}

// swapGrace is the grace period of a container stopped because its image changed: the pod's
// (k8s.io/kubernetes v1.37.2 pkg/kubelet/kuberuntime/kuberuntime_container.go
// setTerminationGracePeriod: the deletion's grace period when one is set, else
// terminationGracePeriodSeconds, default 30 s; killContainerWithGracePeriod then gives at least
// minimumGracePeriodInSeconds, 2 s).
func (rt *podRT) swapGrace() time.Duration {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	grace := int64(30)
	switch {
	case rt.pod.DeletionGracePeriodSeconds != nil:
		grace = *rt.pod.DeletionGracePeriodSeconds
	case rt.pod.Spec.TerminationGracePeriodSeconds != nil:
		grace = *rt.pod.Spec.TerminationGracePeriodSeconds
	}
	return time.Duration(max(grace, 2)) * time.Second
}

// specImage is the image field of the named container in the pod's spec as last updated.
func (rt *podRT) specImage(name string, init bool) string {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	list := rt.pod.Spec.Containers
	if init {
		list = rt.pod.Spec.InitContainers
	}
	for i := range list {
		if list[i].Name == name {
			return list[i].Image
		}
	}
	return ""
}

// supervise runs the container until it is done for good or stopped.
//
// An image swap is the kubelet's "definition changed" restart (k8s.io/kubernetes v1.37.2
// pkg/kubelet/kuberuntime/kuberuntime_manager.go computePodActions: a running container whose
// spec hash, kubecontainer.HashContainer over its name and image, no longer matches is killed
// with "Container C definition changed, will be restarted" and started again whatever the
// restart policy; computeInitContainerActions does the same for a running native sidecar,
// "Init container C definition changed"). The old instance is stopped from outside through the
// runtime, as killContainer does: SIGTERM to its PID 1 from the host PID namespace, SIGKILL
// after swapGrace (the kernel delivers that SIGTERM to a namespace's init only if it has a
// handler). The new instance starts at once (the kubelet's backoff is keyed by the spec hash, so
// a new image has none), from the new image, with the same command, args and env:
// restartCount+1, a new containerID, lastState.terminated the old instance's end, status.image
// the new image. A command[0] the new image lacks fails the start as containerd does
// (StartError, 128), and then the restart policy decides as for any exit. A container that has
// ended for good (Never, or OnFailure after exit 0) is not restarted by an image change, as
// computePodActions only restarts a non-running container by ShouldContainerBeRestarted.
func (n *Runtime) supervise(rt *podRT, s *supervisor) {
	defer close(s.done)
	c := &s.c
	fp := fieldPath(c, s.init)
	backoff := n.cfg.Backoff
	// The end of an instance stopped for a new image, and whether restartCount grows: applied
	// with the next instance's first status, so the API sees the old instance replaced by the
	// new one in one write.
	var pendingLast *corev1.ContainerStateTerminated
	bump := false
	applyPending := func(cs *corev1.ContainerStatus) {
		if pendingLast != nil {
			cs.LastTerminationState = corev1.ContainerState{Terminated: pendingLast}
			pendingLast = nil
		}
		if bump {
			cs.RestartCount++
			bump = false
		}
	}
	for {
		if s.stopping() {
			return
		}
		if !n.resolveImage(rt, s, &pendingLast) {
			// No image to run: wait for another one, or the end.
			select {
			case <-s.changed:
				continue
			case <-s.stopCh:
				s.lastCode = 128
				return
			}
		}
		pod := rt.snapshot()
		argv := argvOf(c, s.image)
		env := containerEnv(pod, c, s.image)
		containerID := "containerd://" + hexID()
		startedAt := metav1.Now()
		var exit Exit
		var message string
		program := ""
		if len(argv) > 0 {
			program = argv[0]
		}
		switch {
		case program == "":
			message = "no command specified: the container has no command and the image no entrypoint"
		case s.image.Resolve(program, envPath(env)) == "":
			message = startError(program)
			if len(s.image.Missing) > 0 {
				message += fmt.Sprintf(" (image %s lacks %s: the node was started without --standin)",
					s.image.Name, strings.Join(s.image.Missing, ", "))
			}
		}
		var l *launched
		if message == "" {
			workdir := c.WorkingDir
			if workdir == "" {
				workdir = "/"
			}
			var err error
			l, err = n.launch(launchSpec{
				argv: argv, env: env, root: s.image.Root, workdir: workdir,
				logPath: rt.logPath(c.Name),
			})
			if err != nil {
				message = err.Error()
			}
		}
		swapped := false
		if message != "" {
			exit = Exit{Code: 128}
			n.event(rt, corev1.EventTypeWarning, "Failed", fp, "Error: %s", message)
		} else {
			if l.pid1 != 0 {
				rt.mu.Lock()
				rt.slots[c.Name] = &slot{pid1: l.pid1, launcher: l.launcher, image: s.image, env: env, id: containerID}
				rt.mu.Unlock()
			}
			n.event(rt, corev1.EventTypeNormal, "Created", fp, "Created container: %s", c.Name)
			ref, imageID := s.ref, s.image.Ref()
			rt.setContainer(c.Name, s.init, func(cs *corev1.ContainerStatus) {
				applyPending(cs)
				cs.State = corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: startedAt}}
				cs.ContainerID = containerID
				cs.Image, cs.ImageID = ref, imageID
				t := true
				cs.Started = &t
				cs.Ready = true
			})
			n.event(rt, corev1.EventTypeNormal, "Started", fp, "Started container %s", c.Name)
			s.startOnce.Do(func() { close(s.started) })
			exit, swapped = n.await(rt, s, l)
			rt.mu.Lock()
			delete(rt.slots, c.Name)
			rt.mu.Unlock()
		}
		terminated := terminatedState(exit, message, startedAt, containerID)
		if swapped && !s.stopping() {
			// Replaced: the next instance reports this one's end (see above).
			pendingLast, bump = terminated, true
			backoff = n.cfg.Backoff
			continue
		}
		again := !s.stopping() && s.restart.again(exit.Code)
		podName := fmt.Sprintf("%s_%s(%s)", pod.Name, pod.Namespace, pod.UID)
		ref, imageID := s.ref, s.image.Ref()
		rt.setContainer(c.Name, s.init, func(cs *corev1.ContainerStatus) {
			applyPending(cs)
			f := false
			cs.Ready = false
			cs.Started = &f
			cs.Image, cs.ImageID = ref, imageID
			if message != "" {
				cs.ContainerID = containerID
			}
			if again {
				cs.LastTerminationState = corev1.ContainerState{Terminated: terminated}
				cs.State = waiting("CrashLoopBackOff", fmt.Sprintf("back-off %s restarting failed container=%s pod=%s", backoff, c.Name, podName))
			} else {
				cs.State = corev1.ContainerState{Terminated: terminated}
			}
		})
		if !again {
			s.lastCode = exit.Code
			return
		}
		n.event(rt, corev1.EventTypeWarning, "BackOff", fp, "Back-off restarting failed container %s in pod %s", c.Name, podName)
		if !s.backOff(rt, backoff) {
			// Stopped while backing off: no next instance, so the status shows this one's end
			// (the kubelet's CrashLoopBackOff is a waiting reason for a container that will
			// start again).
			rt.setContainer(c.Name, s.init, func(cs *corev1.ContainerStatus) {
				if cs.State.Waiting != nil {
					cs.State = corev1.ContainerState{Terminated: terminated}
				}
			})
			s.lastCode = exit.Code
			return
		}
		if backoff < 8*n.cfg.Backoff {
			backoff *= 2
		}
		bump = true
	}
}

// backOff waits out a restart's backoff: false when the container is stopped meanwhile. A new
// image ends the wait at once (the kubelet keys its backoff by the container's spec hash).
func (s *supervisor) backOff(rt *podRT, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case <-timer.C:
			return true
		case <-s.stopCh:
			return false
		case <-s.changed:
			if rt.specImage(s.c.Name, s.init) != s.ref {
				return true
			}
		}
	}
}

// await waits for a running instance to end: by itself, stopped (the pod is ending or being
// deleted: SIGTERM, SIGKILL after the stop's grace), or replaced because the pod's spec gave the
// container another image (swapped: see supervise).
func (n *Runtime) await(rt *podRT, s *supervisor, l *launched) (Exit, bool) {
	fp := fieldPath(&s.c, s.init)
	for {
		select {
		case <-l.exited:
			return l.exit, false
		case <-s.stopCh:
			n.event(rt, corev1.EventTypeNormal, "Killing", fp, "Stopping container %s", s.c.Name)
			if s.stopGrace <= 0 {
				l.signal(syscall.SIGKILL)
			} else {
				l.signal(syscall.SIGTERM)
				select {
				case <-l.exited:
				case <-time.After(s.stopGrace):
					l.signal(syscall.SIGKILL)
				case <-rt.killNow:
					l.signal(syscall.SIGKILL)
				}
			}
			return l.wait(), false
		case <-s.changed:
			if rt.specImage(s.c.Name, s.init) == s.ref {
				continue
			}
			message := fmt.Sprintf("Container %s definition changed, will be restarted", s.c.Name)
			if s.init {
				message = fmt.Sprintf("Init container %s definition changed", s.c.Name)
			}
			n.event(rt, corev1.EventTypeNormal, "Killing", fp, "%s", message)
			grace := rt.swapGrace()
			l.signal(syscall.SIGTERM)
			deadline := time.NewTimer(grace)
			stop := s.stopCh
			for killed := false; !killed; {
				select {
				case <-l.exited:
					killed = true
				case <-deadline.C:
					l.signal(syscall.SIGKILL)
					killed = true
				case <-rt.killNow:
					l.signal(syscall.SIGKILL)
					killed = true
				case <-stop:
					// Deleted meanwhile: a forced deletion kills now; otherwise the swap's grace
					// period, already running, holds.
					stop = nil
					if s.stopGrace <= 0 {
						l.signal(syscall.SIGKILL)
						killed = true
					}
				}
			}
			deadline.Stop()
			return l.wait(), true
		}
	}
}

// stopAll stops the regular containers together, then the sidecars in reverse order, within
// grace in all. For the sidecars stopped after the regular containers ended (deletion false) each
// gets what is left, and at least 2 s, as the kubelet gives.
//
// For a deletion, everything must be down before virtual-kubelet removes the object, which it
// does when the grace period ends (the kubelet waits for the containers instead): SIGKILL comes
// deleteMargin before the end, so the pod's last status is written while the object exists.
func stopAll(regular, sidecars []*supervisor, grace time.Duration, deletion bool) {
	if deletion && grace > 0 {
		grace -= min(deleteMargin, grace/10)
	}
	deadline := time.Now().Add(grace)
	for _, s := range regular {
		s.stop(grace)
	}
	for _, s := range regular {
		<-s.done
	}
	for i := len(sidecars) - 1; i >= 0; i-- {
		g := time.Until(deadline)
		switch {
		case grace == 0:
			g = 0
		case deletion:
			g = max(g, time.Millisecond)
		case g < 2*time.Second:
			g = 2 * time.Second
		}
		sidecars[i].stop(g)
		<-sidecars[i].done
	}
}

// deleteMargin is how long before a deletion's grace period ends SIGKILL is sent (see stopAll).
const deleteMargin = 300 * time.Millisecond

// run is one pod's life (see the package docs).
func (n *Runtime) run(rt *podRT) {
	defer close(rt.done)
	// Whatever ends the pod ends its ephemeral containers too (ephemeral.go).
	defer rt.endEphemeral()
	pod := rt.snapshot()
	spec := pod.Spec
	policy := restartOf(spec.RestartPolicy)
	fresh := func(c *corev1.Container, reason string) corev1.ContainerStatus {
		f := false
		return corev1.ContainerStatus{Name: c.Name, Image: c.Image, Started: &f, State: waiting(reason, "")}
	}
	mainReason := "ContainerCreating"
	if len(spec.InitContainers) > 0 {
		mainReason = "PodInitializing"
	}
	rt.update(func(st *corev1.PodStatus) {
		now := metav1.Now()
		st.StartTime = &now
		st.HostIP, st.PodIP = n.cfg.NodeIP, n.cfg.PodIP
		st.HostIPs = []corev1.HostIP{{IP: n.cfg.NodeIP}}
		st.PodIPs = []corev1.PodIP{{IP: n.cfg.PodIP}}
		for i := range spec.InitContainers {
			st.InitContainerStatuses = append(st.InitContainerStatuses, fresh(&spec.InitContainers[i], "PodInitializing"))
		}
		for i := range spec.Containers {
			st.ContainerStatuses = append(st.ContainerStatuses, fresh(&spec.Containers[i], mainReason))
		}
		setCondition(&st.Conditions, corev1.PodReadyToStartContainers, true, "", "")
		setCondition(&st.Conditions, corev1.PodScheduled, true, "", "")
	})

	// Resolve every image first: an unknown one leaves its container waiting for good.
	imgs := map[string]*images.Image{}
	missing := false
	all := make([]struct {
		c    *corev1.Container
		init bool
	}, 0)
	for i := range spec.InitContainers {
		all = append(all, struct {
			c    *corev1.Container
			init bool
		}{&spec.InitContainers[i], true})
	}
	for i := range spec.Containers {
		all = append(all, struct {
			c    *corev1.Container
			init bool
		}{&spec.Containers[i], false})
	}
	for _, e := range all {
		img := n.cfg.Images.Find(e.c.Image)
		if img == nil {
			missing = true
			msg := fmt.Sprintf("Failed to pull image %q: the harness node has no stand-in for it (see tests/images/images.yaml)", e.c.Image)
			n.event(rt, corev1.EventTypeWarning, "Failed", fieldPath(e.c, e.init), "%s", msg)
			rt.setContainer(e.c.Name, e.init, func(cs *corev1.ContainerStatus) { cs.State = waiting("ErrImagePull", msg) })
			continue
		}
		if n.cfg.Prepare != nil {
			prepared, err := n.cfg.Prepare(pod, e.c, img)
			if err != nil {
				missing = true
				msg := err.Error()
				n.event(rt, corev1.EventTypeWarning, "Failed", fieldPath(e.c, e.init), "Error: %s", msg)
				rt.setContainer(e.c.Name, e.init, func(cs *corev1.ContainerStatus) { cs.State = waiting("CreateContainerConfigError", msg) })
				continue
			}
			img = prepared
		}
		imgs[e.c.Name] = img
		n.event(rt, corev1.EventTypeNormal, "Pulled", fieldPath(e.c, e.init), "Container image %q already present on machine", e.c.Image)
	}
	if missing {
		<-rt.deleteReq
		return
	}

	var sidecars, regular []*supervisor
	deleted := func() { stopAll(regular, sidecars, rt.deleteGrace(), true); rt.finish() }
	initFailed := false
	for i := range spec.InitContainers {
		c := spec.InitContainers[i]
		if isSidecar(&c) {
			s := n.startSupervisor(rt, c, true, restartAlways, imgs[c.Name])
			sidecars = append(sidecars, s)
			select {
			case <-s.started:
			case <-rt.deleteReq:
				deleted()
				return
			}
			continue
		}
		r := restartOnFailure
		if policy == restartNever {
			r = restartNever
		}
		s := n.startSupervisor(rt, c, true, r, imgs[c.Name])
		select {
		case <-s.done:
			if s.lastCode != 0 {
				initFailed = true
			}
		case <-rt.deleteReq:
			regular = append(regular, s)
			deleted()
			return
		}
		if initFailed {
			break
		}
	}
	if !initFailed {
		for i := range spec.Containers {
			c := spec.Containers[i]
			regular = append(regular, n.startSupervisor(rt, c, false, policy, imgs[c.Name]))
		}
		allDone := make(chan struct{})
		go func() {
			for _, s := range regular {
				<-s.done
			}
			close(allDone)
		}()
		select {
		case <-allDone:
		case <-rt.deleteReq:
			deleted()
			return
		}
	}
	// Every regular container is done for good: stop the sidecars, last first.
	grace := 30 * time.Second
	if spec.TerminationGracePeriodSeconds != nil && *spec.TerminationGracePeriodSeconds >= 0 {
		grace = time.Duration(*spec.TerminationGracePeriodSeconds) * time.Second
	}
	stopped := make(chan struct{})
	go func() { stopAll(nil, sidecars, grace, false); close(stopped) }()
	select {
	case <-stopped:
	case <-rt.deleteReq:
		deleted()
		return
	}
	rt.finish()
}

// finish marks the pod terminal (no container will run again) and writes the final status.
func (rt *podRT) finish() {
	rt.mu.Lock()
	rt.terminal = true
	rt.mu.Unlock()
	rt.update(func(*corev1.PodStatus) {})
}

// logPath is where a container's output goes (appended across restarts).
func (rt *podRT) logPath(container string) string {
	return filepath.Join(rt.dir, container+".log")
}
