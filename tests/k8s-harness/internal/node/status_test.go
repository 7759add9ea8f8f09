package node

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func running(name string) corev1.ContainerStatus {
	t := true
	return corev1.ContainerStatus{Name: name, Ready: true, Started: &t,
		State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}
}

func terminated(name string, code int32) corev1.ContainerStatus {
	return corev1.ContainerStatus{Name: name,
		State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: code}}}
}

func condition(st *corev1.PodStatus, t corev1.PodConditionType) corev1.PodCondition {
	for _, c := range st.Conditions {
		if c.Type == t {
			return c
		}
	}
	return corev1.PodCondition{}
}

func TestPhaseFollowsTheKubeletRules(t *testing.T) {
	always := corev1.ContainerRestartPolicyAlways
	spec := corev1.PodSpec{
		RestartPolicy:  corev1.RestartPolicyNever,
		InitContainers: []corev1.Container{{Name: "proxy", RestartPolicy: &always}},
		Containers:     []corev1.Container{{Name: "main"}},
	}
	cases := []struct {
		name     string
		inits    []corev1.ContainerStatus
		mains    []corev1.ContainerStatus
		terminal bool
		want     corev1.PodPhase
	}{
		{"all running", []corev1.ContainerStatus{running("proxy")}, []corev1.ContainerStatus{running("main")}, false, corev1.PodRunning},
		{"main done, sidecar still up: still Running", []corev1.ContainerStatus{running("proxy")}, []corev1.ContainerStatus{terminated("main", 0)}, false, corev1.PodRunning},
		{"main done, sidecar stopped: Succeeded", []corev1.ContainerStatus{terminated("proxy", 137)}, []corev1.ContainerStatus{terminated("main", 0)}, true, corev1.PodSucceeded},
		{"main failed, sidecar stopped: Failed", []corev1.ContainerStatus{terminated("proxy", 0)}, []corev1.ContainerStatus{terminated("main", 3)}, true, corev1.PodFailed},
		{"sidecar waiting: Pending", []corev1.ContainerStatus{{Name: "proxy", State: waiting("PodInitializing", "")}}, []corev1.ContainerStatus{{Name: "main", State: waiting("PodInitializing", "")}}, false, corev1.PodPending},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st := corev1.PodStatus{InitContainerStatuses: c.inits, ContainerStatuses: c.mains}
			recompute(&spec, &st, c.terminal)
			if st.Phase != c.want {
				t.Fatalf("phase %s, want %s", st.Phase, c.want)
			}
		})
	}
}

func TestAFinishedPodIsNotReadyAndSaysPodCompleted(t *testing.T) {
	spec := corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{{Name: "main"}}}
	st := corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{running("main")}}
	recompute(&spec, &st, false)
	if c := condition(&st, corev1.PodReady); c.Status != corev1.ConditionTrue {
		t.Fatalf("running pod: Ready %+v", c)
	}
	st.ContainerStatuses = []corev1.ContainerStatus{terminated("main", 0)}
	recompute(&spec, &st, true)
	c := condition(&st, corev1.PodReady)
	if st.Phase != corev1.PodSucceeded || c.Status != corev1.ConditionFalse || c.Reason != "PodCompleted" || c.Message != "" {
		t.Fatalf("phase %s, Ready %+v", st.Phase, c)
	}
}

func TestATerminalPhaseNeverChanges(t *testing.T) {
	spec := corev1.PodSpec{Containers: []corev1.Container{{Name: "main"}}}
	st := corev1.PodStatus{Phase: corev1.PodFailed, ContainerStatuses: []corev1.ContainerStatus{running("main")}}
	recompute(&spec, &st, false)
	if st.Phase != corev1.PodFailed {
		t.Fatalf("phase %s", st.Phase)
	}
}

func TestStatusPatchClearsWhatWasCleared(t *testing.T) {
	old := corev1.PodStatus{Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Message: "containers with unready status: [main]"}}}
	now := corev1.PodStatus{Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Reason: "PodCompleted"}}}
	patch, unchanged, err := statusPatch("uid-1", old, now)
	if err != nil || unchanged {
		t.Fatalf("err %v, unchanged %v", err, unchanged)
	}
	want := `{"metadata":{"uid":"uid-1"},"status":{"$setElementOrder/conditions":[{"type":"Ready"}],"conditions":[{"message":null,"reason":"PodCompleted","type":"Ready"}]}}`
	if string(patch) != want {
		t.Fatalf("patch\n%s\nwant\n%s", patch, want)
	}
	if _, unchanged, _ := statusPatch("uid-1", now, now); !unchanged {
		t.Fatal("an unchanged status should make no patch")
	}
}

func TestRestartPolicies(t *testing.T) {
	if restartOf(corev1.RestartPolicyNever).again(1) || !restartOf(corev1.RestartPolicyOnFailure).again(1) ||
		restartOf(corev1.RestartPolicyOnFailure).again(0) || !restartOf("").again(0) {
		t.Fatal("restart rules")
	}
}

func TestStartErrorsReadLikeContainerd(t *testing.T) {
	got := startError("kill")
	want := `failed to create containerd task: failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: error during container init: exec: "kill": executable file not found in $PATH: unknown`
	if got != want {
		t.Fatalf("%s", got)
	}
}
