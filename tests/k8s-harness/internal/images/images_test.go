package images

import (
	"os"
	"path/filepath"
	"testing"
)

func TestTagsAndDigestsAreStripped(t *testing.T) {
	for in, want := range map[string]string{
		"docker.io/istio/proxyv2:1.22.0": "docker.io/istio/proxyv2",
		"localhost:5000/img":             "localhost:5000/img",
		"alpine@sha256:abc":              "alpine",
		"sidekill.test/main":             "sidekill.test/main",
	} {
		if got := StripTag(in); got != want {
			t.Errorf("StripTag(%q) = %q, want %q", in, got, want)
		}
	}
}

const catalogue = `images:
  - name: sidekill.test/shell
    aliases: [alpine, docker.io/library/busybox]
    rootfs: host
    entrypoint: [sh]
  - name: sidekill.test/distroless
    aliases: [gcr.io/distroless/static]
    rootfs: minimal
    tools: [sidecar]
    entrypoint: [/usr/local/bin/sidecar]
    env: {PATH: /usr/local/bin}
`

func TestTheRepositoryCatalogueMaterialises(t *testing.T) {
	c, err := Materialise("../../../images", t.TempDir(), "")
	if err != nil {
		t.Fatal(err)
	}
	if c.Find("alpine:3.20") == nil || c.Find("gcr.io/distroless/static:nonroot") == nil {
		t.Fatalf("aliases not found in %v", c.Names())
	}
}

func TestImagesResolveProgramsInsideTheirRoot(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "images.yaml"), []byte(catalogue), 0o644); err != nil {
		t.Fatal(err)
	}
	standin := filepath.Join(dir, "standin")
	if err := os.WriteFile(standin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	c, err := Materialise(dir, filepath.Join(dir, "state"), standin)
	if err != nil {
		t.Fatal(err)
	}
	shell := c.Find("docker.io/library/busybox:latest")
	if shell == nil || shell.Root != "" || shell.Resolve("sh", "") == "" {
		t.Fatalf("shell image: %+v", shell)
	}
	distroless := c.Find("gcr.io/distroless/static")
	if distroless == nil || distroless.Root == "" {
		t.Fatalf("distroless image: %+v", distroless)
	}
	if distroless.Resolve("sidecar", "") == "" || distroless.Resolve("/usr/local/bin/sidecar", "") == "" {
		t.Fatal("the stand-in is not inside the distroless root")
	}
	if p := distroless.Resolve("kill", ""); p != "" {
		t.Fatalf("distroless has no kill, resolved %s", p)
	}
	if c.Find("nginx") != nil {
		t.Fatal("an image not in the catalogue was found")
	}
}

func TestWithoutTheStandinToolsAreMissing(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "images.yaml"), []byte(catalogue), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Materialise(dir, filepath.Join(dir, "state"), "")
	if err != nil {
		t.Fatal(err)
	}
	if d := c.Find("gcr.io/distroless/static"); len(d.Missing) != 1 || d.Resolve("sidecar", "") != "" {
		t.Fatalf("distroless without stand-in: %+v", d)
	}
}
