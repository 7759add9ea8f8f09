package images

// sidekill's own images, made from the REAL sidekill-quitter binary, never from a stand-in
// imitation: the entries of tests/images/images.yaml with `binary: sidekill-quitter` (the same
// entries crates/testcluster builds them from: their name, aliases, entrypoint, env and paths
// live there and nowhere else). Today those are:
//
//   - sidekill-nop (`paths: nopPaths`): the binary at every path of
//     sidekill_policy::nop::NOP_PATHS (hard links of one copy), PATH = NOP_PATH_ENV. Under any
//     name but `sidekill-quitter` the binary exits 0, so a container swapped to it ends with exit
//     code 0 whatever its command was, provided that command[0] is one of those paths (else it
//     fails to start: StartError, as on containerd).
//   - sidekill-quitter (`paths: [/sidekill-quitter]`).
//
// Each is chrooted into like a `rootfs: minimal` stand-in; a dynamically linked binary gets the
// shared libraries ldd names (the release image's binary is static and needs none). `nopPaths`
// is read from the policy crate's source (crates/policy/src/nop.rs), so the harness and the
// policy's prediction never disagree, and nobody copies the list by hand.
//
// An OCI tarball given for the same name (--oci-image sidekill-nop=dist/image/...tar, from
// scripts/build-image) takes precedence: LoadOCIArchive puts its image first.

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// nopPathsName is the `paths` value that stands for NopSpec.Paths (as in crates/testcluster's
// images.rs).
const nopPathsName = "nopPaths"

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

// placement is where one quitter-binary image puts the binary, and its PATH.
type placement struct {
	paths   []string
	pathEnv string
}

// placementOf reads an entry's `paths`: `nopPaths` (NopSpec's paths and PATH) or a list of
// absolute paths (PATH the host default). The entrypoint must be one of them.
func placementOf(s spec, nop NopSpec) (placement, error) {
	var name string
	if err := json.Unmarshal(s.Paths, &name); err == nil {
		if name != nopPathsName {
			return placement{}, fmt.Errorf("image %s: paths is %q; a name must be %s", s.Name, name, nopPathsName)
		}
		return placement{paths: nop.Paths, pathEnv: nop.PathEnv}, nil
	}
	var list []string
	if err := json.Unmarshal(s.Paths, &list); err != nil || len(list) == 0 {
		return placement{}, fmt.Errorf("image %s: paths must be %s or a list of absolute paths", s.Name, nopPathsName)
	}
	for _, p := range list {
		if !strings.HasPrefix(p, "/") || strings.Contains(p, "..") {
			return placement{}, fmt.Errorf("image %s: paths: %q is not an absolute path", s.Name, p)
		}
	}
	return placement{paths: list, pathEnv: HostPath}, nil
}

// AddQuitterImages lays out every `binary: sidekill-quitter` entry of the catalogue file from
// the sidekill-quitter binary under stateDir/images and puts them first in the catalogue (before
// any stand-in of the same name; call it before LoadOCIArchive, whose images go first in turn,
// so a tarball given for the same name wins). It returns the names of the images made. Errors
// name the image or the path that failed; a catalogue without such an entry is an error.
func (c *Catalogue) AddQuitterImages(binary, stateDir string, nop NopSpec) ([]string, error) {
	if len(c.quitterSpecs) == 0 {
		return nil, fmt.Errorf("the image catalogue declares no `binary: sidekill-quitter` image")
	}
	binary, err := filepath.Abs(binary)
	if err != nil {
		return nil, err
	}
	if st, err := os.Stat(binary); err != nil {
		return nil, fmt.Errorf("the sidekill-quitter binary: %w", err)
	} else if !st.Mode().IsRegular() || st.Mode().Perm()&0o111 == 0 {
		return nil, fmt.Errorf("the sidekill-quitter binary %s is not an executable file", binary)
	}
	libs, err := lddLibraries(binary)
	if err != nil {
		return nil, err
	}
	digest, err := fileDigest(binary)
	if err != nil {
		return nil, err
	}
	made := make([]entry, 0, len(c.quitterSpecs))
	names := make([]string, 0, len(c.quitterSpecs))
	for _, s := range c.quitterSpecs {
		place, err := placementOf(s, nop)
		if err != nil {
			return nil, err
		}
		if len(s.Entrypoint) == 0 || !slices.Contains(place.paths, s.Entrypoint[0]) {
			return nil, fmt.Errorf("image %s: the entrypoint %v is not one of its paths", s.Name, s.Entrypoint)
		}
		root := filepath.Join(stateDir, "images", slug(s.Name), "root")
		if err := os.RemoveAll(root); err != nil {
			return nil, err
		}
		for _, d := range []string{"proc", "tmp", "dev", "etc"} {
			if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
				return nil, err
			}
		}
		for _, lib := range libs {
			dst := filepath.Join(root, strings.TrimPrefix(lib, "/"))
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return nil, err
			}
			if err := copyFile(lib, dst, 0o755); err != nil {
				return nil, fmt.Errorf("copying %s into %s: %w", lib, s.Name, err)
			}
		}
		first := ""
		for _, p := range place.paths {
			dst := filepath.Join(root, strings.TrimPrefix(p, "/"))
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return nil, err
			}
			if first == "" {
				if err := copyFile(binary, dst, 0o755); err != nil {
					return nil, fmt.Errorf("copying %s to %s: %w", binary, dst, err)
				}
				first = dst
				continue
			}
			_ = os.Remove(dst)
			if err := os.Link(first, dst); err != nil {
				return nil, fmt.Errorf("linking %s: %w", dst, err)
			}
		}
		env := map[string]string{"PATH": place.pathEnv}
		for k, v := range s.Env {
			env[k] = v
		}
		img := &Image{
			Name:        s.Name,
			Description: fmt.Sprintf("%s (the real sidekill-quitter binary %s at %d path(s))", s.Description, digest, len(place.paths)),
			Entrypoint:  s.Entrypoint,
			Env:         env,
			Root:        root,
			ID:          digestOf(s.Name, strings.Join(place.paths, " "), digest),
		}
		made = append(made, entry{names: append([]string{s.Name}, s.Aliases...), image: img})
		names = append(names, s.Name)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.images = append(made, c.images...)
	return names, nil
}
