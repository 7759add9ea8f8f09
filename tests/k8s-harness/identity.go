package main

// What running a real image (--oci-image) needs from the node beyond the stand-ins: the
// service-account identity a kubelet gives a pod. For each container of an OCI image, the node
//   - requests a token for the pod's ServiceAccount with the TokenRequest API, bound to the pod
//     (as the kubelet's projected service-account-token volume does; the Node authorizer and
//     NodeRestriction admit exactly that for pods bound to this node), for 3607 s (the
//     kubelet's default); it is not rotated, which is plenty for a test run;
//   - takes the CA from the namespace's kube-root-ca.crt ConfigMap (kube-controller-manager's
//     root-ca publisher), as the kubelet's projected volume does;
//   - writes token, ca.crt and namespace under var/run/secrets/kubernetes.io/serviceaccount of
//     a root folder of the container's own: a hard-linked copy of the image's root (the node
//     has no volumes, so this stands in for the mount; containers are chrooted into it);
//   - sets KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT to the apiserver's own address
//     from the node's kubeconfig. A kubelet sets them to the `kubernetes` Service's ClusterIP;
//     the harness has no service network (no kube-proxy), so the ClusterIP would not answer.
// A pod whose image names a digest (`name@sha256:...`) other than the loaded image's is refused
// (CreateContainerConfigError), as a runtime pulling by digest would fail.
// Stand-in images are left as they were (no volumes: see docs/k8s-harness.md).

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"example.invalid/sidekill/tests/k8s-harness/internal/images"
)

const serviceAccountDir = "var/run/secrets/kubernetes.io/serviceaccount"

// podIdentity gives the containers of --oci-image images their identity (see above).
type podIdentity struct {
	client     kubernetes.Interface
	stateDir   string
	apiHost    string
	apiPort    string
	ociDigests map[*images.Image]string
}

func newPodIdentity(client kubernetes.Interface, apiServer, stateDir string) (*podIdentity, error) {
	u, err := url.Parse(apiServer)
	if err != nil {
		return nil, fmt.Errorf("the apiserver address %q: %w", apiServer, err)
	}
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil {
		host, port = u.Hostname(), "443"
	}
	return &podIdentity{client: client, stateDir: stateDir, apiHost: host, apiPort: port,
		ociDigests: map[*images.Image]string{}}, nil
}

// loadOCIImages adds each NAME=TARBALL of --oci-image to the catalogue.
func (p *podIdentity) loadOCIImages(catalogue *images.Catalogue, specs []string) error {
	for _, spec := range specs {
		name, archive, ok := strings.Cut(spec, "=")
		if !ok || name == "" || archive == "" {
			return fmt.Errorf("--oci-image %q: want NAME=TARBALL", spec)
		}
		img, digest, err := catalogue.LoadOCIArchive(name, archive, p.stateDir)
		if err != nil {
			return fmt.Errorf("--oci-image %s: %w", spec, err)
		}
		p.ociDigests[img] = digest
		fmt.Fprintf(os.Stderr, "node: image %s from %s (%s), entrypoint %q\n", img.Name, archive, digest, img.Entrypoint)
	}
	return nil
}

// prepare is the runtime's Config.Prepare: see the file's comment.
func (p *podIdentity) prepare(pod *corev1.Pod, c *corev1.Container, img *images.Image) (*images.Image, error) {
	digest, ok := p.ociDigests[img]
	if !ok {
		return img, nil
	}
	if at := strings.Index(c.Image, "@"); at >= 0 && c.Image[at+1:] != digest {
		return nil, fmt.Errorf("image %q: the node has %s as %s", c.Image, img.Name, digest)
	}
	root := filepath.Join(p.stateDir, "pods", pod.Namespace+"_"+pod.Name+"_"+string(pod.UID), "root-"+c.Name)
	if err := os.RemoveAll(root); err != nil {
		return nil, err
	}
	if err := linkTree(img.Root, root); err != nil {
		return nil, fmt.Errorf("laying out the container's root: %w", err)
	}
	if pod.Spec.AutomountServiceAccountToken == nil || *pod.Spec.AutomountServiceAccountToken {
		if err := p.writeServiceAccount(pod, filepath.Join(root, serviceAccountDir)); err != nil {
			return nil, err
		}
	}
	setEnv(c, "KUBERNETES_SERVICE_HOST", p.apiHost)
	setEnv(c, "KUBERNETES_SERVICE_PORT", p.apiPort)
	setEnv(c, "KUBERNETES_SERVICE_PORT_HTTPS", p.apiPort)
	own := *img
	own.Root = root
	return &own, nil
}

func (p *podIdentity) writeServiceAccount(pod *corev1.Pod, dir string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	expiry := int64(3607)
	tr, err := p.client.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(ctx, sa, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{
			ExpirationSeconds: &expiry,
			BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("a token for ServiceAccount %s/%s: %w", pod.Namespace, sa, err)
	}
	cm, err := p.client.CoreV1().ConfigMaps(pod.Namespace).Get(ctx, "kube-root-ca.crt", metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("the CA (ConfigMap %s/kube-root-ca.crt): %w", pod.Namespace, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for name, data := range map[string]string{"token": tr.Status.Token, "ca.crt": cm.Data["ca.crt"], "namespace": pod.Namespace} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func setEnv(c *corev1.Container, name, value string) {
	for i := range c.Env {
		if c.Env[i].Name == name {
			c.Env[i].Value, c.Env[i].ValueFrom = value, nil
			return
		}
	}
	c.Env = append(c.Env, corev1.EnvVar{Name: name, Value: value})
}

// linkTree copies the folder tree src to dst with hard links for files (the image's root is
// read-only to its containers by convention; a container writing a file would write the image).
func linkTree(src, dst string) error {
	return filepath.Walk(src, func(path string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		switch {
		case info.IsDir():
			if err := os.MkdirAll(target, 0o755); err != nil {
				return err
			}
			return os.Chmod(target, info.Mode().Perm()|info.Mode()&os.ModeSticky)
		case info.Mode()&os.ModeSymlink != 0:
			link, err := os.Readlink(path)
			if err != nil {
				return err
			}
			return os.Symlink(link, target)
		default:
			return os.Link(path, target)
		}
	})
}
