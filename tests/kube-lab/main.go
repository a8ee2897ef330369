// Command kube-lab runs a real Kubernetes control plane for barelb's tests:
// embedded etcd, kube-apiserver and kube-controller-manager in one process,
// bound to 127.0.0.1 only, plus a version-matched kubectl.
//
//	kube-lab serve --dir DIR     run until SIGTERM; writes DIR/kubeconfig when ready
//	kube-lab kubectl ARGS...     the kubectl of the same Kubernetes version
//
// Test tooling only: nothing here ships with barelb.
package main

import (
	"fmt"
	"os"

	"k8s.io/component-base/cli"
	kubectlcmd "k8s.io/kubectl/pkg/cmd"
)

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	switch os.Args[1] {
	case "serve":
		if err := serve(os.Args[2:]); err != nil {
			fmt.Fprintf(os.Stderr, "kube-lab serve: %v\n", err)
			os.Exit(1)
		}
	case "kubectl":
		cmd := kubectlcmd.NewDefaultKubectlCommand()
		cmd.SetArgs(os.Args[2:])
		os.Exit(cli.Run(cmd))
	case "-h", "--help", "help":
		usage()
	default:
		usage()
		os.Exit(2)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, `usage:
  kube-lab serve --dir DIR [--port N]   run etcd + kube-apiserver + kube-controller-manager on 127.0.0.1
  kube-lab kubectl ARGS...              version-matched kubectl`)
}
