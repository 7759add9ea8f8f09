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

// The nop and quitter images are built from images.yaml's own entries (issue #15: one home for
// their names, aliases and entrypoints, shared with crates/testcluster).
func TestNopAndQuitterImagesHoldTheBinary(t *testing.T) {
	dir := t.TempDir()
	binary := filepath.Join(dir, "sidekill-quitter")
	if err := os.WriteFile(binary, []byte("#!/bin/true\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	c, err := Materialise("../../../images", filepath.Join(dir, "state"), "")
	if err != nil {
		t.Fatal(err)
	}
	nop := NopSpec{Paths: []string{"/nop", "/bin/sh", "/usr/local/bin/pilot-agent"}, PathEnv: "/usr/local/bin:/bin"}
	made, err := c.AddQuitterImages(binary, filepath.Join(dir, "state"), nop)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(made, []string{"sidekill-nop", "sidekill-quitter"}) {
		t.Errorf("made %v, want images.yaml's two binary: sidekill-quitter entries", made)
	}
	img := c.Find("docker.io/library/sidekill-nop:0.1.0")
	if img == nil || img.Root == "" || img.Entrypoint[0] != "/nop" || img.Env["PATH"] != nop.PathEnv {
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

// An entry's paths must be nopPaths or absolute paths holding its entrypoint; a catalogue with
// no quitter-binary entry cannot make the images.
func TestQuitterImageEntriesAreChecked(t *testing.T) {
	nop := NopSpec{Paths: []string{"/nop"}, PathEnv: "/"}
	for paths, want := range map[string]string{
		`"other"`:    "a name must be nopPaths",
		`["rel/x"]`:  "not an absolute path",
		`{"a": "b"}`: "paths must be nopPaths or a list",
	} {
		_, err := placementOf(spec{Name: "x", Paths: []byte(paths)}, nop)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("paths %s: %v, want %q", paths, err, want)
		}
	}
	binary := filepath.Join(t.TempDir(), "q")
	if _, err := (&Catalogue{}).AddQuitterImages(binary, t.TempDir(), nop); err == nil || !strings.Contains(err.Error(), "declares no") {
		t.Errorf("an empty catalogue: %v", err)
	}
	c := &Catalogue{quitterSpecs: []spec{{Name: "x", Paths: []byte(`["/a"]`), Entrypoint: []string{"/b"}}}}
	if err := os.WriteFile(binary, []byte("#!/bin/true\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := c.AddQuitterImages(binary, t.TempDir(), nop); err == nil || !strings.Contains(err.Error(), "not one of its paths") {
		t.Errorf("an entrypoint outside the paths: %v", err)
	}
}
