package main

import (
	"fmt"
	"runtime/debug"
)

// moduleVersion is the version of a module built into this binary, or "unknown".
func moduleVersion(path string) string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	for _, m := range info.Deps {
		if m.Path == path {
			if m.Replace != nil {
				return m.Replace.Version
			}
			return m.Version
		}
	}
	return "unknown"
}

func runVersion(args []string) int {
	info, _ := debug.ReadBuildInfo()
	goVersion := "unknown"
	if info != nil {
		goVersion = info.GoVersion
	}
	fmt.Printf("k8s.io/kubernetes                        %s\n", moduleVersion("k8s.io/kubernetes"))
	fmt.Printf("k8s.io/apiserver                         %s\n", moduleVersion("k8s.io/apiserver"))
	fmt.Printf("go.etcd.io/etcd/server/v3                %s\n", moduleVersion("go.etcd.io/etcd/server/v3"))
	fmt.Printf("github.com/virtual-kubelet/virtual-kubelet %s\n", moduleVersion("github.com/virtual-kubelet/virtual-kubelet"))
	fmt.Printf("go                                       %s\n", goVersion)
	return 0
}
