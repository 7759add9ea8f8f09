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
type supervisor struct {
	c       corev1.Container
	init    bool
	restart restart
	image   *images.Image

	stopOnce  sync.Once
	stopCh    chan struct{}
	stopGrace time.Duration

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

func (n *Runtime) startSupervisor(rt *podRT, c corev1.Container, init bool, r restart, img *images.Image) *supervisor {
	s := &supervisor{
		c: c, init: init, restart: r, image: img,
		stopCh: make(chan struct{}), started: make(chan struct{}), done: make(chan struct{}),
	}
	go n.supervise(rt, s)
	return s
}

func (n *Runtime) supervise(rt *podRT, s *supervisor) {
	defer close(s.done)
	c := &s.c
	fp := fieldPath(c, s.init)
	backoff := n.cfg.Backoff
	for {
		if s.stopping() {
			return
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
			rt.setContainer(c.Name, s.init, func(cs *corev1.ContainerStatus) {
				cs.State = corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: startedAt}}
				cs.ContainerID = containerID
				t := true
				cs.Started = &t
				cs.Ready = true
			})
			n.event(rt, corev1.EventTypeNormal, "Started", fp, "Started container %s", c.Name)
			s.startOnce.Do(func() { close(s.started) })
			select {
			case <-l.exited:
				exit = l.exit
			case <-s.stopCh:
				n.event(rt, corev1.EventTypeNormal, "Killing", fp, "Stopping container %s", c.Name)
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
				exit = l.wait()
			}
			rt.mu.Lock()
			delete(rt.slots, c.Name)
			rt.mu.Unlock()
		}
		reason := "Error"
		switch {
		case message != "":
			reason = "StartError"
		case exit.Code == 0:
			reason = "Completed"
		}
		terminated := &corev1.ContainerStateTerminated{
			ExitCode: exit.Code, Signal: exit.Signal, Reason: reason, Message: message,
			StartedAt: startedAt, FinishedAt: metav1.Now(), ContainerID: containerID,
		}
		again := !s.stopping() && s.restart.again(exit.Code)
		podName := fmt.Sprintf("%s_%s(%s)", pod.Name, pod.Namespace, pod.UID)
		rt.setContainer(c.Name, s.init, func(cs *corev1.ContainerStatus) {
			f := false
			cs.Ready = false
			cs.Started = &f
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
		select {
		case <-time.After(backoff):
		case <-s.stopCh:
			s.lastCode = exit.Code
			return
		}
		if backoff < 8*n.cfg.Backoff {
			backoff *= 2
		}
		rt.setContainer(c.Name, s.init, func(cs *corev1.ContainerStatus) { cs.RestartCount++ })
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
		st.HostIP, st.PodIP = n.cfg.NodeIP, n.cfg.NodeIP
		st.HostIPs = []corev1.HostIP{{IP: n.cfg.NodeIP}}
		st.PodIPs = []corev1.PodIP{{IP: n.cfg.NodeIP}}
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
