package images

// sidekill's own images, `sidekill-nop:0.1.0` and `sidekill-quitter:0.1.0` (see the project's
// CONTRACT and crates/quitter), made from the REAL sidekill-quitter binary, never from a
// stand-in imitation:
//
//   - sidekill-nop: a root folder holding the binary at every path of
//     sidekill_policy::nop::NOP_PATHS (hard links of one copy), ENTRYPOINT the first path
//     (/nop), PATH = NOP_PATH_ENV. Under any name but `sidekill-quitter` the binary exits 0, so
//     a container swapped to it ends with exit code 0 whatever its command was, provided that
//     command[0] is one of those paths (else it fails to start: StartError, as on containerd).
//   - sidekill-quitter: a root folder holding /sidekill-quitter, its ENTRYPOINT.
//
// Both are chrooted into like a `rootfs: minimal` stand-in; a dynamically linked binary gets the
// shared libraries ldd names (the release image's binary is static and needs none). The list of
// paths is read from the policy crate's source (crates/policy/src/nop.rs), so the harness and
// the policy's prediction never disagree, and nobody copies the list by hand.
//
// An OCI tarball given for the same name (--oci-image sidekill-nop=dist/image/...tar, from
// scripts/build-image) takes precedence: LoadOCIArchive puts its image first.

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

const (
	// NopImage is the nop image's name, as Find compares it (no tag, no docker.io/library/).
	NopImage = "sidekill-nop"
	// QuitterImage is the quitter image's name.
	QuitterImage = "sidekill-quitter"
	// quitterPath is the quitter image's ENTRYPOINT; its file name makes the binary the quitter.
	quitterPath = "/sidekill-quitter"
)

// NopSpec is what the nop image holds, as crates/policy/src/nop.rs declares it.
type NopSpec struct {
	// Paths are NOP_PATHS: the binary is at each; the first is the ENTRYPOINT.
	Paths []string
	// PathEnv is NOP_PATH_ENV, the image's PATH.
	PathEnv string
}

var (
	nopPathsRE = regexp.MustCompile(`(?s)pub const NOP_PATHS: \[&str; (\d+)\] = \[(.*?)\];`)
	nopEnvRE   = regexp.MustCompile(`pub const NOP_PATH_ENV: &str = "([^"]*)";`)
	stringRE   = regexp.MustCompile(`"([^"\\]*)"`)
)

// ParseNopSource reads NOP_PATHS and NOP_PATH_ENV from the text of crates/policy/src/nop.rs.
// It fails when either constant is missing, or when the array holds another number of strings
// than its type declares (the file changed shape: better to stop than to build a wrong image).
func ParseNopSource(text string) (NopSpec, error) {
	m := nopPathsRE.FindStringSubmatch(text)
	if m == nil {
		return NopSpec{}, fmt.Errorf("no `pub const NOP_PATHS: [&str; N] = [...];`")
	}
	want, _ := strconv.Atoi(m[1])
	var spec NopSpec
	for _, line := range strings.Split(m[2], "\n") {
		if i := strings.Index(line, "//"); i >= 0 {
			line = line[:i]
		}
		for _, s := range stringRE.FindAllStringSubmatch(line, -1) {
			spec.Paths = append(spec.Paths, s[1])
		}
	}
	if len(spec.Paths) != want || want == 0 {
		return NopSpec{}, fmt.Errorf("NOP_PATHS declares %d paths, %d read", want, len(spec.Paths))
	}
	for _, p := range spec.Paths {
		if !strings.HasPrefix(p, "/") || strings.Contains(p, "..") {
			return NopSpec{}, fmt.Errorf("NOP_PATHS: %q is not an absolute path", p)
		}
	}
	e := nopEnvRE.FindStringSubmatch(text)
	if e == nil {
		return NopSpec{}, fmt.Errorf("no `pub const NOP_PATH_ENV: &str = \"...\";`")
	}
	spec.PathEnv = e[1]
	return spec, nil
}

// ReadNopSource is ParseNopSource of a file.
func ReadNopSource(path string) (NopSpec, error) {
	text, err := os.ReadFile(path)
	if err != nil {
		return NopSpec{}, fmt.Errorf("the nop image's paths: %w", err)
	}
	spec, err := ParseNopSource(string(text))
	if err != nil {
		return NopSpec{}, fmt.Errorf("%s: %w", path, err)
	}
	return spec, nil
}

// AddQuitterImages lays out sidekill-nop and sidekill-quitter from the sidekill-quitter binary
// under stateDir/images and puts them first in the catalogue (before any stand-in of the same
// name; call it before LoadOCIArchive, whose images go first in turn, so a tarball given for
// the same name wins). Errors name the path that failed.
func (c *Catalogue) AddQuitterImages(binary, stateDir string, nop NopSpec) error {
	binary, err := filepath.Abs(binary)
	if err != nil {
		return err
	}
	if st, err := os.Stat(binary); err != nil {
		return fmt.Errorf("the sidekill-quitter binary: %w", err)
	} else if !st.Mode().IsRegular() || st.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("the sidekill-quitter binary %s is not an executable file", binary)
	}
	libs, err := lddLibraries(binary)
	if err != nil {
		return err
	}
	digest, err := fileDigest(binary)
	if err != nil {
		return err
	}
	defaultPath := "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	made := []*Image{}
	for _, def := range []struct {
		name  string
		paths []string
		path  string
	}{
		{NopImage, nop.Paths, nop.PathEnv},
		{QuitterImage, []string{quitterPath}, defaultPath},
	} {
		root := filepath.Join(stateDir, "images", slug(def.name), "root")
		if err := os.RemoveAll(root); err != nil {
			return err
		}
		for _, d := range []string{"proc", "tmp", "dev", "etc"} {
			if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
				return err
			}
		}
		for _, lib := range libs {
			dst := filepath.Join(root, strings.TrimPrefix(lib, "/"))
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return err
			}
			if err := copyFile(lib, dst, 0o755); err != nil {
				return fmt.Errorf("copying %s into %s: %w", lib, def.name, err)
			}
		}
		first := ""
		for _, p := range def.paths {
			dst := filepath.Join(root, strings.TrimPrefix(p, "/"))
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return err
			}
			if first == "" {
				if err := copyFile(binary, dst, 0o755); err != nil {
					return fmt.Errorf("copying %s to %s: %w", binary, dst, err)
				}
				first = dst
				continue
			}
			_ = os.Remove(dst)
			if err := os.Link(first, dst); err != nil {
				return fmt.Errorf("linking %s: %w", dst, err)
			}
		}
		made = append(made, &Image{
			Name:        def.name,
			Description: fmt.Sprintf("sidekill's %s image: the real sidekill-quitter binary (%s) at %d path(s)", strings.TrimPrefix(def.name, "sidekill-"), digest, len(def.paths)),
			Entrypoint:  []string{def.paths[0]},
			Env:         map[string]string{"PATH": def.path},
			Root:        root,
			ID:          digestOf(def.name, strings.Join(def.paths, " "), digest),
		})
	}
	entries := make([]entry, 0, len(made))
	for _, img := range made {
		entries = append(entries, entry{names: []string{img.Name}, image: img})
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.images = append(entries, c.images...)
	return nil
}
