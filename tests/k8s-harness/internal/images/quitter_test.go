package images

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The harness reads the nop image's paths from the policy crate itself: this pins that the
// parser still understands the file (a changed shape fails here, not in a cluster run).
func TestTheNopPathsAreReadFromThePolicyCrate(t *testing.T) {
	spec, err := ReadNopSource("../../../../crates/policy/src/nop.rs")
	if err != nil {
		t.Fatal(err)
	}
	if spec.Paths[0] != "/nop" || !slices.Contains(spec.Paths, "/bin/sh") || !slices.Contains(spec.Paths, "/usr/local/bin/pilot-agent") {
		t.Errorf("paths %q: want /nop first, /bin/sh and pilot-agent among them", spec.Paths)
	}
	if !strings.Contains(spec.PathEnv, "/bin") {
		t.Errorf("PATH %q", spec.PathEnv)
	}
}

func TestAMiscountedNopListIsRefused(t *testing.T) {
	text := "pub const NOP_PATHS: [&str; 3] = [\n    \"/nop\",\n    // \"/not\",\n    \"/bin/sh\",\n];\npub const NOP_PATH_ENV: &str = \"/bin\";\n"
	if _, err := ParseNopSource(text); err == nil || !strings.Contains(err.Error(), "declares 3 paths, 2 read") {
		t.Errorf("err = %v", err)
	}
	if _, err := ParseNopSource("pub const NOP_PATHS: [&str; 1] = [\"/nop\"];"); err == nil {
		t.Error("a source without NOP_PATH_ENV was accepted")
	}
}

func TestNopAndQuitterImagesHoldTheBinary(t *testing.T) {
	dir := t.TempDir()
	binary := filepath.Join(dir, "sidekill-quitter")
	if err := os.WriteFile(binary, []byte("#!/bin/true\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	c := &Catalogue{}
	nop := NopSpec{Paths: []string{"/nop", "/bin/sh", "/usr/local/bin/pilot-agent"}, PathEnv: "/usr/local/bin:/bin"}
	if err := c.AddQuitterImages(binary, filepath.Join(dir, "state"), nop); err != nil {
		t.Fatal(err)
	}
	img := c.Find("docker.io/library/sidekill-nop:0.1.0")
	if img == nil || img.Root == "" || img.Entrypoint[0] != "/nop" {
		t.Fatalf("nop image %+v", img)
	}
	for _, program := range []string{"/nop", "sh", "pilot-agent", "/usr/local/bin/pilot-agent"} {
		if img.Resolve(program, "") == "" {
			t.Errorf("%s is not in the nop image", program)
		}
	}
	if img.Resolve("/usr/bin/timeout", "") != "" || img.Resolve("cat", "") != "" {
		t.Error("the nop image holds a program it should not")
	}
	q := c.Find("sidekill-quitter:0.1.0")
	if q == nil || q.Entrypoint[0] != "/sidekill-quitter" || q.Resolve("/sidekill-quitter", "") == "" {
		t.Fatalf("quitter image %+v", q)
	}
	if q.ID == img.ID || !strings.HasPrefix(q.Ref(), "sidekill-quitter@sha256:") {
		t.Errorf("image ids %s %s", q.Ref(), img.Ref())
	}
}
