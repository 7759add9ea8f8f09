package node

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"example.invalid/sidekill/tests/k8s-harness/internal/images"
)

// These tests run real processes in PID namespaces: they need root and util-linux, and are
// skipped without them (stopmethods.sh runs the same behaviour on the genuine apiserver).

const swapCatalogue = `images:
  - name: looper
    rootfs: host
    entrypoint: [sh, -c, "trap 'exit 0' TERM; echo looping; while :; do sleep 0.05; done"]
  - name: done
    rootfs: host
    entrypoint: ["true"]
`

func newTestRuntime(t *testing.T, pod *corev1.Pod) *Runtime {
	t.Helper()
	tools, err := FindTools()
	if err != nil {
		t.Skip(err)
	}
	if err := CheckPrivilege(tools); err != nil {
		t.Skip(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "images.yaml"), []byte(swapCatalogue), 0o644); err != nil {
		t.Fatal(err)
	}
	cat, err := images.Materialise(dir, filepath.Join(dir, "state"), "")
	if err != nil {
		t.Fatal(err)
	}
	rt := New(Config{NodeName: "n", NodeIP: "127.0.0.1", StateDir: filepath.Join(dir, "state"),
		Images: cat, Tools: tools, Client: fake.NewSimpleClientset(pod)})
	t.Cleanup(func() { rt.Shutdown(5 * time.Second) })
	return rt
}

func testPod() *corev1.Pod {
	grace := int64(2)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "uid-1"},
		Spec: corev1.PodSpec{
			RestartPolicy:                 corev1.RestartPolicyNever,
			TerminationGracePeriodSeconds: &grace,
			Containers:                    []corev1.Container{{Name: "side", Image: "looper"}},
		},
	}
}

// waitFor polls the node's view of the pod until ok holds (or fails the test after 20 s).
func waitFor(t *testing.T, rt *Runtime, what string, ok func(p *corev1.Pod) bool) *corev1.Pod {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		p, err := rt.GetPod(context.Background(), "ns", "p")
		if err == nil && ok(p) {
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after 20 s; status %+v", what, p.Status)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func side(p *corev1.Pod) *corev1.ContainerStatus {
	return findStatus(p.Status.ContainerStatuses, "side")
}

// Issue 13's image swap: the kubelet restarts a running container whose image changed, even
// under restartPolicy Never, and reports the old instance in lastState.
func TestAnImageChangeRestartsTheRunningContainerFromTheNewImage(t *testing.T) {
	pod := testPod()
	rt := newTestRuntime(t, pod)
	if err := rt.CreatePod(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
	running := waitFor(t, rt, "running", func(p *corev1.Pod) bool { return side(p) != nil && side(p).State.Running != nil })
	oldID := side(running).ContainerID
	if running.Status.PodIP != DefaultPodIP || running.Status.HostIP != "127.0.0.1" {
		t.Errorf("podIP %s hostIP %s", running.Status.PodIP, running.Status.HostIP)
	}

	updated := pod.DeepCopy()
	updated.Spec.Containers[0].Image = "done:1.0"
	if err := rt.UpdatePod(context.Background(), updated); err != nil {
		t.Fatal(err)
	}
	p := waitFor(t, rt, "swapped", func(p *corev1.Pod) bool { return side(p).State.Terminated != nil })
	cs := side(p)
	last := cs.LastTerminationState.Terminated
	switch {
	case cs.RestartCount != 1:
		t.Errorf("restartCount %d, want 1", cs.RestartCount)
	case cs.State.Terminated.ExitCode != 0 || cs.State.Terminated.Reason != "Completed":
		t.Errorf("new instance ended %+v, want 0 Completed", cs.State.Terminated)
	case last == nil || last.ExitCode != 0 || last.ContainerID != oldID:
		t.Errorf("lastState %+v, want the old instance (%s) ending 0 on SIGTERM", last, oldID)
	case cs.ContainerID == oldID || cs.Image != "done:1.0" || !strings.HasPrefix(cs.ImageID, "done@sha256:"):
		t.Errorf("containerID %s (old %s), image %s, imageID %s", cs.ContainerID, oldID, cs.Image, cs.ImageID)
	}
	// Never, exit 0: done for good, so the pod finishes.
	waitFor(t, rt, "Succeeded", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodSucceeded })
}

// An ephemeral container with a target joins the target's PID namespace: its PID 1 is the
// target's process.
func TestAnEphemeralContainerRunsInItsTargetsPIDNamespace(t *testing.T) {
	pod := testPod()
	rt := newTestRuntime(t, pod)
	if err := rt.CreatePod(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
	waitFor(t, rt, "running", func(p *corev1.Pod) bool { return side(p) != nil && side(p).State.Running != nil })
	updated := pod.DeepCopy()
	updated.Spec.EphemeralContainers = []corev1.EphemeralContainer{{
		EphemeralContainerCommon: corev1.EphemeralContainerCommon{
			Name: "debug", Image: "looper", Command: []string{"sh", "-c", "tr '\\0' ' ' </proc/1/cmdline; echo; exit 3"},
		},
		TargetContainerName: "side",
	}}
	if err := rt.UpdatePod(context.Background(), updated); err != nil {
		t.Fatal(err)
	}
	p := waitFor(t, rt, "ephemeral ended", func(p *corev1.Pod) bool {
		cs := findStatus(p.Status.EphemeralContainerStatuses, "debug")
		return cs != nil && cs.State.Terminated != nil
	})
	cs := findStatus(p.Status.EphemeralContainerStatuses, "debug")
	if cs.State.Terminated.ExitCode != 3 || cs.Ready || cs.RestartCount != 0 || cs.Started != nil || cs.ContainerID == "" {
		t.Errorf("ephemeral status %+v", cs)
	}
	out, err := os.ReadFile(filepath.Join(rt.lookup("ns", "p").dir, "debug.log"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "trap 'exit 0' TERM") {
		t.Errorf("the ephemeral container's /proc/1 is not the target's: %q", out)
	}
	if side(p).State.Running == nil {
		t.Error("the target stopped")
	}
	// Added again (a resync), it does not run again.
	if err := rt.UpdatePod(context.Background(), updated); err != nil {
		t.Fatal(err)
	}
	again := rt.lookup("ns", "p").snapshot()
	if n := len(again.Status.EphemeralContainerStatuses); n != 1 || len(again.Spec.EphemeralContainers) != 1 ||
		again.Status.EphemeralContainerStatuses[0].State.Terminated == nil {
		t.Errorf("started again: %d statuses, %+v", n, again.Status.EphemeralContainerStatuses)
	}
}
