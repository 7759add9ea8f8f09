package node

// Ephemeral containers, as the kubelet runs them (k8s.io/kubernetes v1.37.2
// pkg/kubelet/kuberuntime/kuberuntime_manager.go computePodActions: "Ephemeral Containers are
// never restarted": one is started when it has no status yet, whatever the pod's restart
// policy; kuberuntime_container.go startSpec.getTargetID: with targetContainerName it joins
// that container's PID namespace).
//
// The apiserver adds them through the pods/ephemeralcontainers subresource (kubectl debug, or
// sidekill's strategic-merge patch); virtual-kubelet hands the updated pod to UpdatePod. Each
// new one is started once:
//
//	nsenter --target=TARGET_PID1 --pid -- unshare --mount --mount-proc [--root=IMAGE_ROOT] --wd=W -- argv
//
// so it runs in the target container's PID namespace (a process lookup by name sees the
// sidecar, and /proc is that namespace's), with its own image's root filesystem and its own
// mount namespace, on the machine's network like every container here. Without
// targetContainerName it gets a PID namespace of its own (a pod here has no shared namespace).
//
// Status goes to status.ephemeralContainerStatuses as the kubelet reports it: name, state
// (waiting, running, terminated with exit code and reason), image, imageID, containerID,
// ready false, restartCount 0, no `started` (the prober sets it only for regular and init
// containers). Failure modes: an image the node lacks leaves it Waiting/ErrImagePull; a target
// container with no running process leaves it Waiting/CreateContainerError (the kubelet would
// retry on each sync; nothing here retries); a command not in the image ends it as containerd
// does (Terminated, StartError, 128). When the pod ends (its containers are done, or it is
// deleted) a running ephemeral container gets SIGTERM and, after the grace period, SIGKILL;
// when its target's PID 1 dies the kernel kills it with the rest of that PID namespace.

import (
	"fmt"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func ephemeralFieldPath(name string) string { return "spec.ephemeralContainers{" + name + "}" }

// addEphemeral starts the ephemeral containers of spec not started yet, unless the pod is
// ending. Each gets a Waiting/ContainerCreating status at once.
func (n *Runtime) addEphemeral(rt *podRT, spec []corev1.EphemeralContainer) {
	var start []corev1.EphemeralContainer
	rt.mu.Lock()
	for _, ec := range spec {
		if rt.ephemeralStarted[ec.Name] || rt.ephemeralClosed || rt.terminal {
			continue
		}
		rt.ephemeralStarted[ec.Name] = true
		rt.pod.Spec.EphemeralContainers = append(rt.pod.Spec.EphemeralContainers, *ec.DeepCopy())
		rt.ephemeralWG.Add(1)
		start = append(start, *ec.DeepCopy())
	}
	rt.mu.Unlock()
	for _, ec := range start {
		rt.update(func(st *corev1.PodStatus) {
			st.EphemeralContainerStatuses = append(st.EphemeralContainerStatuses, corev1.ContainerStatus{
				Name: ec.Name, Image: ec.Image, State: waiting("ContainerCreating", ""),
			})
		})
		go n.runEphemeral(rt, ec)
	}
}

// endEphemeral stops the running ephemeral containers and waits for them; none starts after.
func (rt *podRT) endEphemeral() {
	rt.mu.Lock()
	if !rt.ephemeralClosed {
		rt.ephemeralClosed = true
		close(rt.ephemeralStop)
	}
	rt.mu.Unlock()
	rt.ephemeralWG.Wait()
}

func (rt *podRT) setEphemeral(name string, f func(cs *corev1.ContainerStatus)) {
	rt.update(func(st *corev1.PodStatus) {
		if cs := findStatus(st.EphemeralContainerStatuses, name); cs != nil {
			f(cs)
		}
	})
}

func (n *Runtime) runEphemeral(rt *podRT, ec corev1.EphemeralContainer) {
	defer rt.ephemeralWG.Done()
	c := corev1.Container(ec.EphemeralContainerCommon)
	fp := ephemeralFieldPath(c.Name)
	pod := rt.snapshot()
	wait := func(reason, msg string) {
		n.event(rt, corev1.EventTypeWarning, "Failed", fp, "%s", msg)
		rt.setEphemeral(c.Name, func(cs *corev1.ContainerStatus) { cs.State = waiting(reason, msg) })
	}
	img := n.cfg.Images.Find(c.Image)
	if img == nil {
		wait("ErrImagePull", fmt.Sprintf("Failed to pull image %q: the harness node has no stand-in for it (see tests/images/images.yaml)", c.Image))
		return
	}
	if n.cfg.Prepare != nil {
		prepared, err := n.cfg.Prepare(pod, &c, img)
		if err != nil {
			wait("CreateContainerConfigError", "Error: "+err.Error())
			return
		}
		img = prepared
	}
	n.event(rt, corev1.EventTypeNormal, "Pulled", fp, "Container image %q already present on machine", c.Image)
	workdir := c.WorkingDir
	if workdir == "" {
		workdir = "/"
	}
	argv := argvOf(&c, img)
	env := containerEnv(pod, &c, img)
	spec := launchSpec{argv: argv, env: env, root: img.Root, workdir: workdir, logPath: rt.logPath(c.Name)}
	if ec.TargetContainerName != "" {
		rt.mu.Lock()
		target := rt.slots[ec.TargetContainerName]
		rt.mu.Unlock()
		if target == nil {
			wait("CreateContainerError", fmt.Sprintf("Error: the target container %q has no running process: its PID namespace cannot be joined", ec.TargetContainerName))
			return
		}
		spec.targetPID = target.pid1
	}
	containerID := "containerd://" + hexID()
	startedAt := metav1.Now()
	ref, imageID := c.Image, img.Ref()
	end := func(exit Exit, message string) {
		terminated := terminatedState(exit, message, startedAt, containerID)
		rt.setEphemeral(c.Name, func(cs *corev1.ContainerStatus) {
			cs.State = corev1.ContainerState{Terminated: terminated}
			cs.ContainerID, cs.Image, cs.ImageID, cs.Ready = containerID, ref, imageID, false
		})
	}
	program := ""
	if len(argv) > 0 {
		program = argv[0]
	}
	message := ""
	switch {
	case program == "":
		message = "no command specified: the container has no command and the image no entrypoint"
	case img.Resolve(program, envPath(env)) == "":
		message = startError(program)
	}
	var l *launched
	if message == "" {
		var err error
		if l, err = n.launch(spec); err != nil {
			message = err.Error()
		}
	}
	if message != "" {
		n.event(rt, corev1.EventTypeWarning, "Failed", fp, "Error: %s", message)
		end(Exit{Code: 128}, message)
		return
	}
	if l.pid1 != 0 {
		rt.mu.Lock()
		rt.slots[c.Name] = &slot{pid1: l.pid1, launcher: l.launcher, image: img, env: env, id: containerID}
		rt.mu.Unlock()
	}
	n.event(rt, corev1.EventTypeNormal, "Created", fp, "Created container: %s", c.Name)
	rt.setEphemeral(c.Name, func(cs *corev1.ContainerStatus) {
		cs.State = corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: startedAt}}
		cs.ContainerID, cs.Image, cs.ImageID, cs.Ready = containerID, ref, imageID, false
	})
	n.event(rt, corev1.EventTypeNormal, "Started", fp, "Started container %s", c.Name)
	var exit Exit
	select {
	case <-l.exited:
		exit = l.exit
	case <-rt.deleteReq:
		exit = n.stopEphemeral(rt, l, c.Name, rt.deleteGrace())
	case <-rt.ephemeralStop:
		// The pod's containers are done (a deletion's grace, if any, is used up by now).
		grace := 2 * time.Second
		select {
		case <-rt.deleteReq:
			grace = 0
		default:
		}
		exit = n.stopEphemeral(rt, l, c.Name, grace)
	}
	rt.mu.Lock()
	delete(rt.slots, c.Name)
	rt.mu.Unlock()
	end(exit, "")
}

// stopEphemeral stops a running ephemeral container: SIGTERM, SIGKILL after grace (a deletion's
// grace less deleteMargin, as stopAll does), or at once for grace 0 or a forced deletion.
func (n *Runtime) stopEphemeral(rt *podRT, l *launched, name string, grace time.Duration) Exit {
	n.event(rt, corev1.EventTypeNormal, "Killing", ephemeralFieldPath(name), "Stopping container %s", name)
	if grace > 0 {
		grace -= min(deleteMargin, grace/10)
	}
	if grace <= 0 {
		l.signal(syscall.SIGKILL)
		return l.wait()
	}
	l.signal(syscall.SIGTERM)
	select {
	case <-l.exited:
	case <-time.After(grace):
		l.signal(syscall.SIGKILL)
	case <-rt.killNow:
		l.signal(syscall.SIGKILL)
	}
	return l.wait()
}
