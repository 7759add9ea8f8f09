package images

// OCI image tarballs (scripts/build-image's output): the node can run a real image besides the
// stand-ins, so the Deployment that charts/sidekill renders starts the very binary the image
// carries. The tarball is read as an OCI image layout (oci-layout, index.json, blobs/sha256):
// the first manifest of the index, its config (Entrypoint, Env, WorkingDir) and its layers,
// each checked against its digest and unpacked in order into a root folder that containers
// are chrooted into, as for a `rootfs: minimal` stand-in. Whiteouts are not supported (the
// project's image has one layer); a layer holding one is refused.

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

type ociDescriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations"`
}

type ociIndex struct {
	Manifests []ociDescriptor `json:"manifests"`
}

type ociManifest struct {
	Config ociDescriptor   `json:"config"`
	Layers []ociDescriptor `json:"layers"`
}

type ociConfig struct {
	Config struct {
		Entrypoint []string `json:"Entrypoint"`
		Cmd        []string `json:"Cmd"`
		Env        []string `json:"Env"`
	} `json:"config"`
}

// LoadOCIArchive unpacks the image in the OCI image tarball archive under
// stateDir/images/oci-<slug of name>/root and adds it to the catalogue as name (compared as
// Find compares: without tag or digest). The image's ENTRYPOINT and CMD are joined as its
// Entrypoint (the harness has no separate CMD: a container's args follow), its Env is kept.
// It returns the image and its manifest's digest (sha256:...).
func (c *Catalogue) LoadOCIArchive(name, archive, stateDir string) (*Image, string, error) {
	blobs, err := readTar(archive)
	if err != nil {
		return nil, "", err
	}
	blob := func(d ociDescriptor) ([]byte, error) {
		hexDigest, ok := strings.CutPrefix(d.Digest, "sha256:")
		if !ok {
			return nil, fmt.Errorf("%s: digest %q is not sha256", archive, d.Digest)
		}
		data, ok := blobs["blobs/sha256/"+hexDigest]
		if !ok {
			return nil, fmt.Errorf("%s: no blob %s", archive, d.Digest)
		}
		sum := sha256.Sum256(data)
		if hex.EncodeToString(sum[:]) != hexDigest {
			return nil, fmt.Errorf("%s: blob %s does not match its digest", archive, d.Digest)
		}
		return data, nil
	}
	var index ociIndex
	if err := json.Unmarshal(blobs["index.json"], &index); err != nil || len(index.Manifests) == 0 {
		return nil, "", fmt.Errorf("%s: no OCI index.json with a manifest (is it an OCI image layout?)", archive)
	}
	data, err := blob(index.Manifests[0])
	if err != nil {
		return nil, "", err
	}
	var manifest ociManifest
	if err := json.Unmarshal(data, &manifest); err != nil {
		return nil, "", fmt.Errorf("%s: manifest: %w", archive, err)
	}
	if data, err = blob(manifest.Config); err != nil {
		return nil, "", err
	}
	var config ociConfig
	if err := json.Unmarshal(data, &config); err != nil {
		return nil, "", fmt.Errorf("%s: config: %w", archive, err)
	}
	root := filepath.Join(stateDir, "images", "oci-"+slug(StripTag(name)), "root")
	if err := os.RemoveAll(root); err != nil {
		return nil, "", err
	}
	for _, layer := range manifest.Layers {
		data, err := blob(layer)
		if err != nil {
			return nil, "", err
		}
		if err := unpackLayer(data, root); err != nil {
			return nil, "", fmt.Errorf("%s: layer %s: %w", archive, layer.Digest, err)
		}
	}
	img := &Image{
		Name:        StripTag(name),
		Description: "OCI image " + filepath.Base(archive) + " (" + index.Manifests[0].Digest + ")",
		Entrypoint:  append(append([]string(nil), config.Config.Entrypoint...), config.Config.Cmd...),
		Env:         map[string]string{},
		Root:        root,
		ID:          index.Manifests[0].Digest,
	}
	for _, kv := range config.Config.Env {
		if k, v, ok := strings.Cut(kv, "="); ok {
			img.Env[k] = v
		}
	}
	if img.Env["PATH"] == "" {
		img.Env["PATH"] = "/"
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.images = append([]entry{{names: []string{img.Name}, image: img}}, c.images...)
	return img, index.Manifests[0].Digest, nil
}

// readTar reads every regular file of a (small) tarball into memory, by path.
func readTar(path string) (map[string][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	files := map[string][]byte{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if h.Typeflag == tar.TypeReg {
			data, err := io.ReadAll(tr)
			if err != nil {
				return nil, fmt.Errorf("%s: %s: %w", path, h.Name, err)
			}
			files[strings.TrimPrefix(h.Name, "./")] = data
		}
	}
}

// unpackLayer extracts a gzipped (or plain) layer tar into root: folders, files, symlinks and
// hard links, with their modes; ownership is left to root (the node runs as root).
func unpackLayer(data []byte, root string) error {
	var r io.Reader = bytes.NewReader(data)
	if len(data) > 2 && data[0] == 0x1f && data[1] == 0x8b {
		gz, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			return err
		}
		r = gz
	}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		clean := filepath.Clean("/" + h.Name)
		if strings.HasPrefix(filepath.Base(clean), ".wh.") {
			return fmt.Errorf("%s: whiteouts are not supported", h.Name)
		}
		dst := filepath.Join(root, clean)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		mode := os.FileMode(h.Mode).Perm()
		if h.Mode&0o1000 != 0 {
			mode |= os.ModeSticky
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(dst, 0o755); err != nil {
				return err
			}
			if err := os.Chmod(dst, mode); err != nil {
				return err
			}
		case tar.TypeReg:
			_ = os.Remove(dst)
			out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
			if err != nil {
				return err
			}
			if _, err := io.Copy(out, tr); err != nil {
				out.Close()
				return err
			}
			if err := out.Close(); err != nil {
				return err
			}
			if err := os.Chmod(dst, mode); err != nil {
				return err
			}
		case tar.TypeSymlink:
			_ = os.Remove(dst)
			if err := os.Symlink(h.Linkname, dst); err != nil {
				return err
			}
		case tar.TypeLink:
			_ = os.Remove(dst)
			if err := os.Link(filepath.Join(root, filepath.Clean("/"+h.Linkname)), dst); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%s: unsupported entry type %q", h.Name, h.Typeflag)
		}
	}
}
