// Command k8s-harness is sidekill's end-to-end bed on a genuine Kubernetes API server, in one
// binary: etcd (go.etcd.io/etcd/server/v3/embed), the real kube-apiserver (k8s.io/kubernetes
// cmd/kube-apiserver/app), and a node agent built on virtual-kubelet whose containers are real
// processes in their own PID namespaces. start.sh beside this file wires them together; see
// docs/k8s-harness.md.
//
// Exit codes: 0 done; 1 the subcommand failed while running; 2 bad arguments.
package main

import (
	"flag"
	"fmt"
	"os"
)

const usage = `k8s-harness: sidekill's end-to-end bed on a genuine Kubernetes API server.

Usage: k8s-harness <subcommand> [flags]

Subcommands:
  certs       write a CA, serving and client certificates, SA keys and a token file
  etcd        run etcd (embedded go.etcd.io/etcd/server/v3) on a loopback URL
  apiserver   run the real kube-apiserver; every flag is kube-apiserver's own
  controller-manager
              run the real kube-controller-manager; every flag is its own
  node        run the node agent (virtual-kubelet; containers are real processes)
  version     print the versions built in

Run 'k8s-harness <subcommand> --help' for a subcommand's flags.
Exit codes: 0 done; 1 the subcommand failed while running; 2 bad arguments.
`

// commands are the subcommands by name; each answers its exit status.
var commands = map[string]func(args []string) int{
	"certs":              runCerts,
	"etcd":               runEtcd,
	"apiserver":          runAPIServer,
	"controller-manager": runControllerManager,
	"node":               runNode,
	"version":            runVersion,
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	switch os.Args[1] {
	case "-h", "--help", "help":
		fmt.Print(usage)
		return
	}
	run, ok := commands[os.Args[1]]
	if !ok {
		fmt.Fprintf(os.Stderr, "k8s-harness: unknown subcommand %q\n\n%s", os.Args[1], usage)
		os.Exit(2)
	}
	os.Exit(run(os.Args[2:]))
}

// newFlagSet is a subcommand's flag set whose usage (on -h or a bad flag) is "Usage:
// k8s-harness " and `usage`, then `help`, then the flags.
func newFlagSet(name, usage, help string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: k8s-harness %s [flags]\n\n%s\nFlags:\n", usage, help)
		fs.PrintDefaults()
	}
	return fs
}
