// Command kube-lab runs a real Kubernetes cluster for barelb's tests:
// embedded etcd, kube-apiserver, kube-controller-manager (and, for a
// cluster with nodes, kube-scheduler) in one process, plus the node
// components and a version-matched kubectl from the same build.
//
//	kube-lab serve --dir DIR [--bind IP] [--nodes]   the control plane, until SIGTERM
//	kube-lab kubelet ARGS...                         a kubelet
//	kube-lab kube-proxy ARGS...                      a kube-proxy
//	kube-lab cert --dir DIR --cn CN [--org O] --out P  a client certificate from the lab CA
//	kube-lab image --out FILE --name REF --binary B [--arg A]...  an OCI image archive
//	  (or of several files: --file SRC:DEST [--libs] [--link DEST:TARGET] [--entrypoint W])
//	kube-lab kubectl ARGS...                         the kubectl of the same Kubernetes version
//
// Test tooling only: nothing here ships with barelb.
package main

import (
	"context"
	"fmt"
	"os"

	"k8s.io/component-base/cli"
	kubectlcmd "k8s.io/kubectl/pkg/cmd"
	proxyapp "k8s.io/kubernetes/cmd/kube-proxy/app"
	kubeletapp "k8s.io/kubernetes/cmd/kubelet/app"
)

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	sub := map[string]func([]string) error{
		"serve": serve,
		"cert":  cert,
		"image": image,
	}
	switch name := os.Args[1]; name {
	case "kubectl":
		cmd := kubectlcmd.NewDefaultKubectlCommand()
		cmd.SetArgs(os.Args[2:])
		os.Exit(cli.Run(cmd))
	case "kubelet":
		cmd := kubeletapp.NewKubeletCommand(context.Background())
		cmd.SetArgs(os.Args[2:])
		os.Exit(cli.Run(cmd))
	case "kube-proxy":
		cmd := proxyapp.NewProxyCommand()
		cmd.SetArgs(os.Args[2:])
		os.Exit(cli.Run(cmd))
	case "-h", "--help", "help":
		usage()
	default:
		run, ok := sub[name]
		if !ok {
			usage()
			os.Exit(2)
		}
		if err := run(os.Args[2:]); err != nil {
			fmt.Fprintf(os.Stderr, "kube-lab %s: %v\n", name, err)
			os.Exit(1)
		}
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, `usage:
  kube-lab serve --dir DIR [--port N] [--bind IP] [--nodes]
                                        etcd + kube-apiserver + kube-controller-manager on IP (127.0.0.1);
                                        --nodes: also kube-scheduler and the workload controllers
  kube-lab kubelet ARGS...              kubelet
  kube-lab kube-proxy ARGS...           kube-proxy
  kube-lab cert --dir DIR --cn CN [--org O] --out PREFIX
                                        client certificate PREFIX.crt/.key signed by the lab CA
  kube-lab image --out FILE --name REF --binary PATH [--arg ARG]...
                                        OCI image archive with one static binary as its entrypoint
  kube-lab image --out FILE --name REF --file SRC:DEST... [--libs] [--link DEST:TARGET]...
        [--entrypoint W]... [--arg ARG]... [--env K=V]...
                                        OCI image archive of several files of this machine
  kube-lab kubectl ARGS...              version-matched kubectl`)
}
