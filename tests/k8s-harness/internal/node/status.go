package node

import (
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// isSidecar says whether an init container is a native sidecar (restartPolicy: Always).
func isSidecar(c *corev1.Container) bool {
	return c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways
}

func waiting(reason, message string) corev1.ContainerState {
	return corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: message}}
}

func setCondition(conds *[]corev1.PodCondition, t corev1.PodConditionType, ok bool, reason, message string) {
	status := corev1.ConditionFalse
	if ok {
		status = corev1.ConditionTrue
	}
	for i := range *conds {
		c := &(*conds)[i]
		if c.Type != t {
			continue
		}
		if c.Status != status {
			c.LastTransitionTime = metav1.Now()
		}
		c.Status, c.Reason, c.Message = status, reason, message
		return
	}
	*conds = append(*conds, corev1.PodCondition{
		Type: t, Status: status, Reason: reason, Message: message, LastTransitionTime: metav1.Now(),
	})
}

func findStatus(list []corev1.ContainerStatus, name string) *corev1.ContainerStatus {
	for i := range list {
		if list[i].Name == name {
			return &list[i]
		}
	}
	return nil
}

// recompute sets the phase and the conditions from the container statuses, by the kubelet's
// rules (the same rules as crates/testcluster). terminal says that no container will run again
// (the sidecars have been stopped): until then a finished pod still counts as Running.
func recompute(spec *corev1.PodSpec, st *corev1.PodStatus, terminal bool) {
	if st.Phase == corev1.PodSucceeded || st.Phase == corev1.PodFailed {
		return
	}
	var pendingInit, pendingSidecar, failedInit int
	var unknown, running, waitingN, stopped, succeeded int
	var unready, uninitialized []string
	for i := range spec.InitContainers {
		c := &spec.InitContainers[i]
		cs := findStatus(st.InitContainerStatuses, c.Name)
		if cs == nil {
			if isSidecar(c) {
				unknown++
			} else {
				pendingInit++
			}
			uninitialized = append(uninitialized, c.Name)
			continue
		}
		lastFailed := cs.LastTerminationState.Terminated != nil && cs.LastTerminationState.Terminated.ExitCode != 0
		hasLast := cs.LastTerminationState.Terminated != nil
		if isSidecar(c) {
			switch {
			case cs.State.Running != nil:
				if cs.Started == nil || !*cs.Started {
					pendingSidecar++
					uninitialized = append(uninitialized, c.Name)
				}
				running++
				if !cs.Ready {
					unready = append(unready, c.Name)
				}
			case cs.State.Terminated != nil || hasLast:
				// Terminated sidecars do not count for the phase.
			default:
				pendingSidecar++
				waitingN++
				uninitialized = append(uninitialized, c.Name)
				unready = append(unready, c.Name)
			}
			continue
		}
		switch {
		case cs.State.Running != nil:
			pendingInit++
			uninitialized = append(uninitialized, c.Name)
		case cs.State.Terminated != nil:
			if cs.State.Terminated.ExitCode != 0 {
				failedInit++
				uninitialized = append(uninitialized, c.Name)
			}
		case hasLast:
			if lastFailed {
				failedInit++
			}
			uninitialized = append(uninitialized, c.Name)
		default:
			pendingInit++
			uninitialized = append(uninitialized, c.Name)
		}
	}
	for i := range spec.Containers {
		c := &spec.Containers[i]
		cs := findStatus(st.ContainerStatuses, c.Name)
		if cs == nil {
			unknown++
			unready = append(unready, c.Name)
			continue
		}
		if !cs.Ready {
			unready = append(unready, c.Name)
		}
		switch {
		case cs.State.Running != nil:
			running++
		case cs.State.Terminated != nil:
			stopped++
			if cs.State.Terminated.ExitCode == 0 {
				succeeded++
			}
		case cs.LastTerminationState.Terminated != nil:
			stopped++
		default:
			waitingN++
		}
	}
	policy := spec.RestartPolicy
	if policy == "" {
		policy = corev1.RestartPolicyAlways
	}
	var phase corev1.PodPhase
	switch {
	case failedInit > 0 && policy == corev1.RestartPolicyNever:
		phase = corev1.PodFailed
	case pendingInit > 0 || (pendingSidecar > 0 && !terminal) || waitingN > 0:
		phase = corev1.PodPending
	case running > 0 && unknown == 0:
		phase = corev1.PodRunning
	case running == 0 && stopped > 0 && unknown == 0:
		switch {
		case terminal && stopped == succeeded:
			phase = corev1.PodSucceeded
		case terminal:
			phase = corev1.PodFailed
		case policy == corev1.RestartPolicyAlways:
			phase = corev1.PodRunning
		case stopped == succeeded:
			phase = corev1.PodSucceeded
		case policy == corev1.RestartPolicyNever:
			phase = corev1.PodFailed
		default:
			phase = corev1.PodRunning
		}
	default:
		phase = corev1.PodPending
	}
	// Until the sidecars have been stopped, a finished pod still counts as running.
	if (phase == corev1.PodSucceeded || phase == corev1.PodFailed) && !terminal {
		phase = corev1.PodRunning
	}
	st.Phase = phase
	list := func(v []string) string { return "[" + strings.Join(v, " ") + "]" }
	initialized := len(uninitialized) == 0
	var reason, message string
	if !initialized {
		reason, message = "ContainersNotInitialized", "containers with incomplete status: "+list(uninitialized)
	}
	setCondition(&st.Conditions, corev1.PodInitialized, initialized, reason, message)
	done := phase == corev1.PodSucceeded || phase == corev1.PodFailed
	ready := len(unready) == 0 && !done
	reason, message = "", ""
	switch {
	case done:
		reason = "PodCompleted"
	case !ready:
		reason, message = "ContainersNotReady", "containers with unready status: "+list(unready)
	}
	setCondition(&st.Conditions, corev1.ContainersReady, ready, reason, message)
	setCondition(&st.Conditions, corev1.PodReady, ready, reason, message)
	order := map[corev1.PodConditionType]int{
		corev1.PodReadyToStartContainers: 0, corev1.PodInitialized: 1, corev1.PodReady: 2,
		corev1.ContainersReady: 3, corev1.PodScheduled: 4,
	}
	sort.SliceStable(st.Conditions, func(i, j int) bool {
		oi, ok := order[st.Conditions[i].Type]
		if !ok {
			oi = len(order)
		}
		oj, ok := order[st.Conditions[j].Type]
		if !ok {
			oj = len(order)
		}
		return oi < oj
	})
}

// terminatedState is how a container instance that started at startedAt ended, with the reasons
// containerd's CRI plugin reports (completeExitReason "Completed" on exit code 0, errorExitReason
// "Error" otherwise) and StartError when it never started (message says why). Regular, init and
// ephemeral containers all end through it.
func terminatedState(exit Exit, message string, startedAt metav1.Time, containerID string) *corev1.ContainerStateTerminated {
	reason := "Error"
	switch {
	case message != "":
		reason = "StartError"
	case exit.Code == 0:
		reason = "Completed"
	}
	return &corev1.ContainerStateTerminated{
		ExitCode: exit.Code, Signal: exit.Signal, Reason: reason, Message: message,
		StartedAt: startedAt, FinishedAt: metav1.Now(), ContainerID: containerID,
	}
}

// startError is containerd's message for a container whose command is not in the image.
func startError(program string) string {
	detail := fmt.Sprintf("exec: %q: executable file not found in $PATH", program)
	if strings.Contains(program, "/") {
		detail = fmt.Sprintf("exec: %q: stat %s: no such file or directory", program, program)
	}
	return "failed to create containerd task: failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: error during container init: " + detail + ": unknown"
}

// execNotFound is containerd's message for an exec whose command is not in the container.
func execNotFound(program, id string) string {
	detail := fmt.Sprintf("exec: %q: executable file not found in $PATH", program)
	if strings.Contains(program, "/") {
		detail = fmt.Sprintf("exec: %q: stat %s: no such file or directory", program, program)
	}
	return fmt.Sprintf("failed to exec in container: failed to start exec %q: OCI runtime exec failed: exec failed: unable to start container process: %s: unknown", id, detail)
}
