// Package images is the node agent's view of the stand-in images: the catalogue in
// tests/images/images.yaml (the same file and rules as crates/testcluster), materialised on disk.
//
// A `rootfs: host` image is a folder of programs put first on the container's PATH; the
// container otherwise sees the machine's files. A `rootfs: minimal` image is a root folder holding
// only the stand-in binary (under each tool's name) and the shared libraries `ldd` says it needs;
// its containers are chrooted into it (`unshare --root`), so they have no shell and no kill.
//
// Tools are the multi-call binary `sidekill-standin` (built by crates/testcluster) under each
// tool's name. Without that binary (no --standin) the tools are simply absent: a container whose
// command is one fails to start as a missing program does on a real node (StartError), and a
// host image's shell still finds the machine's own programs (sh, sleep, kill, pidof if present).
package images

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	"sigs.k8s.io/yaml"
)

// HostPath is the PATH of a host image after its own bin folder.
const HostPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

type spec struct {
	Name        string            `json:"name"`
	Description string            `json:"description"`
	Aliases     []string          `json:"aliases"`
	RootFS      string            `json:"rootfs"`
	Tools       []string          `json:"tools"`
	Files       []string          `json:"files"`
	Entrypoint  []string          `json:"entrypoint"`
	Env         map[string]string `json:"env"`
	// Binary is `sidekill-quitter` for sidekill's own nop and quitter images, which hold the
	// real binary rather than the stand-in: AddQuitterImages lays them out (from --quitter),
	// so the loop below skips them. Paths is where that binary goes (`nopPaths`, or a list).
	Binary string          `json:"binary"`
	Paths  json.RawMessage `json:"paths"`
}

type catalogueFile struct {
	Images []spec `json:"images"`
}

// Image is one stand-in image, ready to run containers from.
type Image struct {
	// Name is the catalogue name, e.g. sidekill.test/sidecar.
	Name string
	// Description says what it stands in for.
	Description string
	// Entrypoint is the image's ENTRYPOINT; a container's command replaces it.
	Entrypoint []string
	// Env is the environment every container of the image starts with (PATH included).
	Env map[string]string
	// Root is the folder containers are chrooted into (rootfs: minimal), or "".
	Root string
	// Missing names the image's tools this node has no stand-in binary for (no --standin).
	Missing []string
	// ID is the image's digest (sha256:...), reported in a container status's imageID: the OCI
	// manifest's digest, or for a catalogue image a digest of its name, entrypoint and files.
	ID string
}

// Ref is what a container status reports as imageID: NAME@DIGEST, as containerd reports a
// pulled image's repo digest.
func (i *Image) Ref() string {
	return i.Name + "@" + i.ID
}

// Resolve says where program (an argv[0]) is inside the container, as a path on this machine,
// using the container's PATH (pathEnv, or the image's); "" when it is not there.
func (i *Image) Resolve(program, pathEnv string) string {
	inside := func(p string) string {
		if i.Root == "" {
			return p
		}
		return filepath.Join(i.Root, strings.TrimPrefix(p, "/"))
	}
	executable := func(p string) bool {
		st, err := os.Stat(p)
		return err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0
	}
	if strings.Contains(program, "/") {
		p := inside(program)
		if executable(p) {
			return p
		}
		return ""
	}
	if pathEnv == "" {
		pathEnv = i.Env["PATH"]
	}
	if pathEnv == "" {
		pathEnv = HostPath
	}
	for _, d := range strings.Split(pathEnv, ":") {
		if d == "" {
			continue
		}
		if p := inside(filepath.Join(d, program)); executable(p) {
			return p
		}
	}
	return ""
}

// Catalogue is the images of one node, materialised under its state folder.
type Catalogue struct {
	mu     sync.Mutex
	images []entry
	// quitterSpecs are the `binary: sidekill-quitter` entries, for AddQuitterImages.
	quitterSpecs []spec
}

type entry struct {
	names []string
	image *Image
}

// StripTag drops a tag or digest: docker.io/istio/proxyv2:1.2@sha256:.. -> docker.io/istio/proxyv2.
func StripTag(ref string) string {
	if i := strings.Index(ref, "@"); i >= 0 {
		ref = ref[:i]
	}
	if i := strings.LastIndex(ref, ":"); i >= 0 && !strings.Contains(ref[i:], "/") {
		ref = ref[:i]
	}
	return ref
}

func lddLibraries(binary string) ([]string, error) {
	out, err := exec.Command("ldd", binary).Output()
	text := string(out)
	if strings.Contains(text, "not a dynamic executable") || strings.Contains(text, "statically linked") {
		return nil, nil
	}
	if err != nil && len(out) == 0 {
		var ee *exec.ExitError
		if errors.As(err, &ee) && bytes.Contains(ee.Stderr, []byte("not a dynamic executable")) {
			return nil, nil
		}
		return nil, fmt.Errorf("running ldd on %s: %w", binary, err)
	}
	var libs []string
	for _, w := range strings.Fields(text) {
		if strings.HasPrefix(w, "/") {
			libs = append(libs, w)
		}
	}
	return libs, nil
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	_ = os.Remove(dst)
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// digestOf is sha256:HEX of the parts, each on a line.
func digestOf(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{'\n'})
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// fileDigest is sha256:HEX of a file's content.
func fileDigest(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("reading %s: %w", path, err)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

func slug(name string) string {
	var b strings.Builder
	for _, r := range name {
		if r < 128 && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

// Materialise reads dir/images.yaml and lays every image out under stateDir/images, with standin
// (may be "") as the binary behind every tool. Errors name the file or the path that failed.
func Materialise(dir, stateDir, standin string) (*Catalogue, error) {
	source := filepath.Join(dir, "images.yaml")
	text, err := os.ReadFile(source)
	if err != nil {
		return nil, fmt.Errorf("reading the image catalogue: %w", err)
	}
	var file catalogueFile
	if err := yaml.UnmarshalStrict(text, &file); err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	var libs []string
	if standin != "" {
		if standin, err = filepath.Abs(standin); err != nil {
			return nil, err
		}
		if _, err := os.Stat(standin); err != nil {
			return nil, fmt.Errorf("the stand-in binary: %w", err)
		}
		if libs, err = lddLibraries(standin); err != nil {
			return nil, err
		}
	}
	standinDigest := ""
	if standin != "" {
		if standinDigest, err = fileDigest(standin); err != nil {
			return nil, err
		}
	}
	c := &Catalogue{}
	for _, s := range file.Images {
		switch s.Binary {
		case "sidekill-quitter":
			c.quitterSpecs = append(c.quitterSpecs, s)
			continue
		case "", "standin":
		default:
			return nil, fmt.Errorf("%s: image %s: binary must be standin or sidekill-quitter, not %q", source, s.Name, s.Binary)
		}
		base := filepath.Join(stateDir, "images", slug(s.Name))
		img := &Image{Name: s.Name, Description: s.Description, Entrypoint: s.Entrypoint, Env: map[string]string{}}
		var binDir string
		switch s.RootFS {
		case "host":
			binDir = filepath.Join(base, "bin")
			if err := os.MkdirAll(binDir, 0o755); err != nil {
				return nil, err
			}
			img.Env["PATH"] = binDir + ":" + HostPath
		case "minimal":
			img.Root = filepath.Join(base, "root")
			for _, d := range []string{"usr/local/bin", "proc", "tmp", "dev", "etc"} {
				if err := os.MkdirAll(filepath.Join(img.Root, d), 0o755); err != nil {
					return nil, err
				}
			}
			binDir = filepath.Join(img.Root, "usr/local/bin")
			img.Env["PATH"] = "/usr/local/bin"
			for _, lib := range libs {
				dst := filepath.Join(img.Root, strings.TrimPrefix(lib, "/"))
				if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
					return nil, err
				}
				if err := copyFile(lib, dst, 0o755); err != nil {
					return nil, fmt.Errorf("copying %s into %s: %w", lib, s.Name, err)
				}
			}
		default:
			return nil, fmt.Errorf("%s: image %s: rootfs must be host or minimal, not %q", source, s.Name, s.RootFS)
		}
		for _, tool := range s.Tools {
			dst := filepath.Join(binDir, tool)
			if standin == "" {
				img.Missing = append(img.Missing, tool)
				continue
			}
			if s.RootFS == "host" {
				_ = os.Remove(dst)
				if err := os.Symlink(standin, dst); err != nil {
					return nil, err
				}
			} else if err := copyFile(standin, dst, 0o755); err != nil {
				return nil, fmt.Errorf("copying the stand-in into %s: %w", s.Name, err)
			}
		}
		for _, f := range s.Files {
			data, err := os.ReadFile(filepath.Join(dir, f))
			if err != nil {
				return nil, fmt.Errorf("%s: image %s: %w", source, s.Name, err)
			}
			if err := os.WriteFile(filepath.Join(binDir, filepath.Base(f)), data, 0o755); err != nil {
				return nil, err
			}
			if err := os.Chmod(filepath.Join(binDir, filepath.Base(f)), 0o755); err != nil {
				return nil, err
			}
		}
		for k, v := range s.Env {
			img.Env[k] = v
		}
		img.ID = digestOf(s.Name, strings.Join(s.Entrypoint, " "), strings.Join(s.Tools, " "), strings.Join(s.Files, " "), standinDigest)
		c.images = append(c.images, entry{names: append([]string{s.Name}, s.Aliases...), image: img})
	}
	return c, nil
}

// Find returns the image a pod's image field selects (compared without tag or digest, and
// without a docker.io/library/ prefix), or nil.
func (c *Catalogue) Find(ref string) *Image {
	want := StripTag(strings.TrimSpace(ref))
	short := strings.TrimPrefix(want, "docker.io/library/")
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.images {
		for _, n := range e.names {
			if n == want || n == short {
				return e.image
			}
		}
	}
	return nil
}

// Names lists every image's name and description.
func (c *Catalogue) Names() [][2]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out [][2]string
	for _, e := range c.images {
		out = append(out, [2]string{e.image.Name, e.image.Description})
	}
	return out
}
