package main

import (
	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-controller-manager/app"
)

// runControllerManager is cmd/kube-controller-manager's main: every argument is a
// kube-controller-manager flag. start.sh runs only the controllers a test bed without a
// scheduler needs (namespace, serviceaccount, garbagecollector, job, cronjob, ...).
func runControllerManager(args []string) int {
	command := app.NewControllerManagerCommand()
	command.SetArgs(args)
	return cli.Run(command)
}
