package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	vklog "github.com/virtual-kubelet/virtual-kubelet/log"
	vkslog "github.com/virtual-kubelet/virtual-kubelet/log/slog"
	vknode "github.com/virtual-kubelet/virtual-kubelet/node"
	"github.com/virtual-kubelet/virtual-kubelet/node/api"
	"github.com/virtual-kubelet/virtual-kubelet/node/nodeutil"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/server/dynamiccertificates"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/record"

	"example.invalid/sidekill/tests/k8s-harness/internal/images"
	"example.invalid/sidekill/tests/k8s-harness/internal/node"
)

const nodeHelp = `Runs a node agent on virtual-kubelet: it registers the node (Ready), runs the pods
bound to it (spec.nodeName) as real processes, each container in its own PID and mount
namespace (unshare --pid --fork --mount-proc --kill-child), and serves the kubelet API
(exec, logs) over TLS to the apiserver, which it authenticates by client certificate and
authorizes with SubjectAccessReview, as the kubelet's webhook mode does. An image change
restarts a running container from the new image; ephemeral containers run once in their
target's PID namespace. With --quitter it has images sidekill-nop and sidekill-quitter, made
from the real sidekill-quitter binary. Needs root.
`

func runNode(args []string) int {
	fs := newFlagSet("node", "node --kubeconfig F --tls-cert F --tls-key F --client-ca F --images DIR", nodeHelp)
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig of the node's identity (system:node:NAME) (required)")
	name := fs.String("name", "sidekill-node", "node name; pods name it in spec.nodeName")
	nodeIP := fs.String("node-ip", "127.0.0.1", "node address: InternalIP, kubelet API address, pods' hostIP")
	podIP := fs.String("pod-ip", node.DefaultPodIP, "every pod's podIP: a loopback address other than 127.0.0.1 (see docs/k8s-harness.md)")
	port := fs.Int("port", 10250, "kubelet API port")
	tlsCert := fs.String("tls-cert", "", "kubelet API serving certificate (required)")
	tlsKey := fs.String("tls-key", "", "kubelet API serving key (required)")
	clientCA := fs.String("client-ca", "", "CA of the client certificates the kubelet API accepts (required)")
	stateDir := fs.String("state-dir", "", "images and container logs (default: a temporary folder)")
	imagesDir := fs.String("images", "", "folder holding images.yaml (tests/images) (required)")
	standin := fs.String("standin", os.Getenv("SIDEKILL_STANDIN"), "the sidekill-standin binary behind the images' tools [$SIDEKILL_STANDIN]")
	quitter := fs.String("quitter", os.Getenv("SIDEKILL_QUITTER"), "the sidekill-quitter binary (crates/quitter) behind images sidekill-nop and sidekill-quitter [$SIDEKILL_QUITTER]")
	nopSource := fs.String("nop-source", "", "crates/policy/src/nop.rs, read for the nop image's paths (default: beside --images, ../../crates/policy/src/nop.rs)")
	workers := fs.Int("workers", 2, "pod sync workers")
	var ociImages []string
	fs.Func("oci-image", "NAME=TARBALL: run image NAME from this OCI image tarball, with a service-account identity (identity.go); repeatable", func(v string) error {
		ociImages = append(ociImages, v)
		return nil
	})
	verbose := fs.Bool("v", false, "debug logs")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	for flagName, v := range map[string]string{"kubeconfig": *kubeconfig, "tls-cert": *tlsCert, "tls-key": *tlsKey, "client-ca": *clientCA, "images": *imagesDir} {
		if v == "" {
			fmt.Fprintf(os.Stderr, "node: --%s is required\n", flagName)
			return 2
		}
	}
	if net.ParseIP(*nodeIP) == nil {
		fmt.Fprintf(os.Stderr, "node: --node-ip %q is not an IP address\n", *nodeIP)
		return 2
	}
	if net.ParseIP(*podIP) == nil {
		fmt.Fprintf(os.Stderr, "node: --pod-ip %q is not an IP address\n", *podIP)
		return 2
	}
	if *nopSource == "" {
		*nopSource = filepath.Join(*imagesDir, "..", "..", "crates", "policy", "src", "nop.rs")
	}
	if err := serveNode(nodeOptions{
		kubeconfig: *kubeconfig, name: *name, nodeIP: *nodeIP, podIP: *podIP, port: *port,
		tlsCert: *tlsCert, tlsKey: *tlsKey, clientCA: *clientCA, stateDir: *stateDir,
		imagesDir: *imagesDir, standin: *standin, workers: *workers, verbose: *verbose,
		ociImages: ociImages, quitter: *quitter, nopSource: *nopSource,
	}); err != nil {
		fmt.Fprintf(os.Stderr, "node: %v\n", err)
		return 1
	}
	return 0
}

type nodeOptions struct {
	kubeconfig, name, nodeIP, podIP     string
	port                                int
	tlsCert, tlsKey, clientCA, stateDir string
	imagesDir, standin                  string
	quitter, nopSource                  string
	ociImages                           []string
	workers                             int
	verbose                             bool
}

func memTotal() resource.Quantity {
	var si syscall.Sysinfo_t
	if err := syscall.Sysinfo(&si); err != nil {
		return resource.MustParse("8Gi")
	}
	return *resource.NewQuantity(int64(si.Totalram)*int64(si.Unit), resource.BinarySI)
}

func kernelRelease() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return ""
	}
	return string(b[:len(b)-1])
}

func serveNode(o nodeOptions) error {
	level := slog.LevelInfo
	if o.verbose {
		level = slog.LevelDebug
	}
	vklog.L = vkslog.FromSlog(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})))

	tools, err := node.FindTools()
	if err != nil {
		return err
	}
	if err := node.CheckPrivilege(tools); err != nil {
		return err
	}
	if o.stateDir == "" {
		if o.stateDir, err = os.MkdirTemp("", "sidekill-harness-node-"); err != nil {
			return err
		}
	}
	catalogue, err := images.Materialise(o.imagesDir, o.stateDir, o.standin)
	if err != nil {
		return err
	}
	// sidekill's own images from the real binary (internal/images/quitter.go); an OCI tarball
	// given for the same name (--oci-image, below) goes before them.
	if o.quitter != "" {
		nop, err := images.ReadNopSource(o.nopSource)
		if err != nil {
			return err
		}
		made, err := catalogue.AddQuitterImages(o.quitter, o.stateDir, nop)
		if err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "node: images %s from %s (%d nop paths from %s)\n",
			strings.Join(made, " and "), o.quitter, len(nop.Paths), o.nopSource)
	}
	restCfg, err := clientcmd.BuildConfigFromFlags("", o.kubeconfig)
	if err != nil {
		return fmt.Errorf("--kubeconfig: %w", err)
	}
	restCfg.UserAgent = "sidekill-harness-node"
	// The kubelet's client limits, and its separate event client with limits of its own
	// (kubernetes pkg/kubelet/apis/config/v1beta1/defaults.go: kubeAPIQPS 50, kubeAPIBurst 100,
	// eventRecordQPS 50, eventBurst 100; cmd/kubelet/app/server.go builds the event client
	// from a copy of the config). With client-go's default 5 QPS shared by status and Events,
	// Events fell minutes behind after the e2e steps' pods and checks on them timed out.
	restCfg.QPS, restCfg.Burst = 50, 100
	client, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return err
	}
	eventCfg := rest.CopyConfig(restCfg)
	eventCfg.QPS, eventCfg.Burst = 50, 100
	eventClient, err := kubernetes.NewForConfig(eventCfg)
	if err != nil {
		return err
	}
	identity, err := newPodIdentity(client, restCfg.Host, o.stateDir)
	if err != nil {
		return err
	}
	if err := identity.loadOCIImages(catalogue, o.ociImages); err != nil {
		return err
	}

	// virtual-kubelet builds a default client from $KUBECONFIG before taking ours: point it there.
	_ = os.Setenv("KUBECONFIG", o.kubeconfig)
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer cancel()

	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&corev1client.EventSinkImpl{Interface: eventClient.CoreV1().Events("")})
	defer broadcaster.Shutdown()
	recorder := broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "kubelet", Host: o.name})

	rt := node.New(node.Config{
		NodeName: o.name, NodeIP: o.nodeIP, PodIP: o.podIP, StateDir: o.stateDir, Images: catalogue,
		Tools: tools, Client: client, Recorder: recorder, Prepare: identity.prepare,
	})
	defer rt.Shutdown(10 * time.Second)

	mux := http.NewServeMux()
	newProvider := func(pc nodeutil.ProviderConfig) (nodeutil.Provider, vknode.NodeProvider, error) {
		return rt, nil, nil
	}
	n, err := nodeutil.NewNode(o.name, newProvider,
		func(cfg *nodeutil.NodeConfig) error {
			cfg.Handler = mux
			cfg.HTTPListenAddr = net.JoinHostPort(o.nodeIP, strconv.Itoa(o.port))
			cfg.NumWorkers = o.workers
			cfg.InformerResyncPeriod = time.Minute
			cfg.EventRecorder = recorder
			cfg.NodeSpec = nodeObject(o)
			return nil
		},
		nodeutil.WithClient(client),
		func(cfg *nodeutil.NodeConfig) error {
			auth, err := nodeutil.WebhookAuth(cfg.Client, o.name, func(wc *nodeutil.WebhookAuthConfig) error {
				var err error
				wc.AuthnConfig.ClientCertificateCAContentProvider, err = dynamiccertificates.NewDynamicCAContentFromFile("client-ca", o.clientCA)
				return err
			})
			if err != nil {
				return err
			}
			cfg.Handler = api.InstrumentHandler(nodeutil.WithAuth(auth, cfg.Handler))
			return nil
		},
		nodeutil.WithTLSConfig(
			nodeutil.WithKeyPairFromPath(o.tlsCert, o.tlsKey),
			nodeutil.WithCAFromPath(o.clientCA),
		),
		nodeutil.AttachProviderRoutes(mux),
	)
	if err != nil {
		return err
	}
	go n.Run(ctx) //nolint:errcheck
	if err := n.WaitReady(ctx, 2*time.Minute); err != nil {
		return fmt.Errorf("node controller: %w", err)
	}
	fmt.Fprintf(os.Stderr, "node: %s ready; kubelet API on https://%s; state in %s\n",
		o.name, net.JoinHostPort(o.nodeIP, strconv.Itoa(o.port)), filepath.Clean(o.stateDir))
	select {
	case <-ctx.Done():
		fmt.Fprintln(os.Stderr, "node: stopping; killing every container")
		rt.Shutdown(10 * time.Second)
		<-n.Done()
		return nil
	case <-n.Done():
		return n.Err()
	}
}

// nodeObject is the Node this agent registers: labels NodeRestriction lets a node set itself,
// its address and kubelet port, and capacity from this machine.
func nodeObject(o nodeOptions) corev1.Node {
	condition := func(t corev1.NodeConditionType, reason, message string) corev1.NodeCondition {
		return corev1.NodeCondition{Type: t, Status: corev1.ConditionFalse, Reason: reason, Message: message,
			LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}
	}
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    *resource.NewQuantity(int64(runtime.NumCPU()), resource.DecimalSI),
		corev1.ResourceMemory: memTotal(),
		corev1.ResourcePods:   resource.MustParse("110"),
	}
	return corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name: o.name,
			Labels: map[string]string{
				"type":                   "virtual-kubelet",
				"kubernetes.io/hostname": o.name,
				"kubernetes.io/os":       "linux",
				"kubernetes.io/arch":     runtime.GOARCH,
			},
		},
		Status: corev1.NodeStatus{
			Phase: corev1.NodePending,
			Conditions: []corev1.NodeCondition{
				{Type: corev1.NodeReady, Status: corev1.ConditionFalse, Reason: "KubeletNotReady", Message: "starting"},
				condition(corev1.NodeMemoryPressure, "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
				condition(corev1.NodeDiskPressure, "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
				condition(corev1.NodePIDPressure, "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
			},
			Addresses: []corev1.NodeAddress{
				{Type: corev1.NodeInternalIP, Address: o.nodeIP},
				{Type: corev1.NodeHostName, Address: o.name},
			},
			DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: int32(o.port)}},
			Capacity:        capacity,
			Allocatable:     capacity,
			NodeInfo: corev1.NodeSystemInfo{
				KubeletVersion:          moduleVersion("k8s.io/kubernetes"),
				OperatingSystem:         "linux",
				Architecture:            runtime.GOARCH,
				KernelVersion:           kernelRelease(),
				OSImage:                 "sidekill k8s-harness (processes in PID namespaces)",
				ContainerRuntimeVersion: "sidekill-harness://unshare",
			},
		},
	}
}
