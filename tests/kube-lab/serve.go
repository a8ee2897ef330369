package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"go.etcd.io/etcd/server/v3/embed"
	cliflag "k8s.io/component-base/cli/flag"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	kcm "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	kcmoptions "k8s.io/kubernetes/cmd/kube-controller-manager/app/options"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
	scheduleroptions "k8s.io/kubernetes/cmd/kube-scheduler/app/options"
)

// Service ranges of the lab cluster: one per family so dual-stack Services
// can be created. They exist only inside the apiserver's allocator and the
// nodes' kube-proxy rules.
const (
	serviceRangeV4 = "10.96.0.0/16"
	serviceRangeV6 = "fd00:10:96::/108"
	// The `kubernetes` Service: the first address of the v4 range.
	kubernetesServiceIP = "10.96.0.1"
)

// With nodes, the controllers a cluster needs to run workloads too: Pods
// of Deployments and DaemonSets, nodes that stop reporting turned NotReady
// and their Pods evicted, finished Pods collected, PodDisruptionBudgets'
// status kept (evictions and Argo CD's health read it).
var nodeControllers = []string{
	"disruption-controller",
	"deployment-controller",
	"replicaset-controller",
	"daemonset-controller",
	"node-lifecycle-controller",
	"taint-eviction-controller",
	"pod-garbage-collector-controller",
	"ttl-controller",
}

// Controllers the lab needs: namespaces must finish terminating, owners must
// be garbage collected, namespaces get a default ServiceAccount with tokens,
// and Pods with endpoints become EndpointSlices.
var labControllers = []string{
	"namespace-controller",
	"garbage-collector-controller",
	"serviceaccount-controller",
	"serviceaccount-token-controller",
	"endpointslice-controller",
	"endpointslice-mirroring-controller",
	"root-ca-certificate-publisher-controller",
}

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	dir := fs.String("dir", "", "state directory (created; kubeconfig is written here when ready)")
	port := fs.Int("port", 0, "apiserver secure port (0 = pick a free one)")
	bind := fs.String("bind", "127.0.0.1", "address the apiserver binds and advertises (the lab's control-plane address when it has nodes)")
	nodes := fs.Bool("nodes", false, "a cluster with nodes: also kube-scheduler and the workload and node controllers")
	nodeGrace := fs.Duration("node-grace", 20*time.Second, "with --nodes: how long a node's kubelet may be silent before the Node is NotReady (kube-controller-manager's --node-monitor-grace-period; Kubernetes' default is 50s)")
	resume := fs.Bool("resume", false, "start again on what an earlier run left in --dir (its keys, token, ports and etcd data): the same cluster after a control-plane outage")
	if err := fs.Parse(args); err != nil {
		return err
	}
	bindIP := net.ParseIP(*bind)
	if bindIP == nil {
		return fmt.Errorf("--bind %q is not an IP address", *bind)
	}
	if *dir == "" {
		return fmt.Errorf("--dir is required")
	}
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		return err
	}
	// A kubeconfig left from an earlier run must not look ready.
	kubeconfigPath := filepath.Join(*dir, "kubeconfig")
	_ = os.Remove(kubeconfigPath)

	var pki *labPKI
	var token string
	var ports labPorts
	var err error
	tokenFile := filepath.Join(*dir, "tokens.csv")
	if *resume {
		if pki, err = loadPKI(*dir); err != nil {
			return fmt.Errorf("resume: %w", err)
		}
		if token, err = readToken(tokenFile); err != nil {
			return fmt.Errorf("resume: %w", err)
		}
		if ports, err = readPorts(*dir); err != nil {
			return fmt.Errorf("resume: %w", err)
		}
	} else {
		if pki, err = writePKI(*dir, []net.IP{bindIP}); err != nil {
			return fmt.Errorf("pki: %w", err)
		}
		if token, err = randomToken(); err != nil {
			return err
		}
		if err := os.WriteFile(tokenFile, []byte(token+",lab-admin,lab-admin-uid,system:masters\n"), 0o600); err != nil {
			return err
		}
		if ports, err = pickPorts(*port); err != nil {
			return err
		}
		if err := writePorts(*dir, ports); err != nil {
			return err
		}
	}

	etcdURL, stopEtcd, err := startEtcd(filepath.Join(*dir, "etcd"), ports)
	if err != nil {
		return fmt.Errorf("etcd: %w", err)
	}
	defer stopEtcd()

	apiPort := ports.API
	server := "https://" + net.JoinHostPort(*bind, strconv.Itoa(apiPort))

	// Both commands share process-global feature gates; the controller
	// manager flips a default (WatchListClient) while building its flags,
	// which must happen before the apiserver adds the gates to its flag set.
	// The controller manager is driven through its options rather than its
	// cobra command: the command would apply logging configuration a second
	// time in this process, which klog refuses.
	kcmOpts, err := kcmoptions.NewKubeControllerManagerOptions()
	if err != nil {
		return fmt.Errorf("controller-manager options: %w", err)
	}
	kcmFlags := kcmOpts.Flags(kcm.KnownControllers(), kcm.ControllersDisabledByDefault(), kcm.ControllerAliases())
	apiCmd := apiserver.NewAPIServerCommand()
	// Created before the apiserver runs, for the same reason as the
	// controller manager's options: they touch the shared feature gates.
	var schedOpts *scheduleroptions.Options
	if *nodes {
		schedOpts = scheduleroptions.NewOptions()
	}
	apiArgs := []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=" + *bind,
		"--advertise-address=" + *bind,
		"--secure-port=" + strconv.Itoa(apiPort),
		"--tls-cert-file=" + pki.ServingCert,
		"--tls-private-key-file=" + pki.ServingKey,
		"--client-ca-file=" + pki.CACert,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + pki.ServiceAccountPub,
		"--service-account-signing-key-file=" + pki.ServiceAccountKey,
		"--api-audiences=https://kubernetes.default.svc.cluster.local",
		"--token-auth-file=" + tokenFile,
		"--service-cluster-ip-range=" + serviceRangeV4 + "," + serviceRangeV6,
		"--allow-privileged=true",
		"--profiling=false",
		"--v=0",
	}
	if *nodes {
		kubeletClient := filepath.Join(*dir, "apiserver-kubelet-client")
		if err := issueClient(*dir, "kube-apiserver-kubelet-client", "system:masters", kubeletClient); err != nil {
			return err
		}
		apiArgs = append(apiArgs,
			// Kubelets are nodes: the Node authorizer and NodeRestriction
			// hold them to their own objects, as in a real cluster.
			"--authorization-mode=Node,RBAC",
			"--enable-admission-plugins=NodeRestriction",
			// The kubernetes Service points at this address.
			"--endpoint-reconciler-type=lease",
			// Webhooks and aggregated APIs are called at their endpoints
			// (Pod IPs, which this namespace routes), not their ClusterIPs:
			// only the nodes run kube-proxy.
			"--enable-aggregator-routing=true",
			"--kubelet-preferred-address-types=InternalIP,Hostname",
			"--kubelet-client-certificate="+kubeletClient+".crt",
			"--kubelet-client-key="+kubeletClient+".key",
			// Pods on a node that stopped reporting go after 10 s, not 5 min.
			"--default-not-ready-toleration-seconds=10",
			"--default-unreachable-toleration-seconds=10",
		)
		audit, err := writeAuditPolicy(*dir)
		if err != nil {
			return err
		}
		apiArgs = append(apiArgs, audit...)
	} else {
		apiArgs = append(apiArgs,
			// A loopback advertise address cannot back the kubernetes Service.
			"--endpoint-reconciler-type=none",
			"--authorization-mode=RBAC",
		)
	}

	apiErr := make(chan error, 1)
	go func() {
		apiCmd.SetArgs(apiArgs)
		apiErr <- apiCmd.Execute()
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	if err := waitReady(ctx, server, token, pki, apiErr); err != nil {
		return err
	}

	// The kubeconfig appears only once the apiserver is ready: its existence
	// is what `tests/lab up` and the tests wait for.
	tmp := kubeconfigPath + ".tmp"
	if err := os.WriteFile(tmp, []byte(kubeconfig(server, token, pki)), 0o600); err != nil {
		return err
	}

	if err := os.Rename(tmp, kubeconfigPath); err != nil {
		return err
	}
	controllers := labControllers
	kcmArgs := []string{
		"--kubeconfig=" + kubeconfigPath,
		"--secure-port=0",
		"--leader-elect=false",
		"--service-account-private-key-file=" + pki.ServiceAccountKey,
		"--root-ca-file=" + pki.CACert,
		"--use-service-account-credentials=false",
		"--concurrent-gc-syncs=5",
	}
	if *nodes {
		controllers = append(append([]string{}, labControllers...), nodeControllers...)
		// A node whose kubelet stops reporting is NotReady after --node-grace.
		kcmArgs = append(kcmArgs, "--node-monitor-grace-period="+nodeGrace.String(), "--node-monitor-period=2s")
	}
	kcmArgs = append(kcmArgs, "--controllers="+strings.Join(controllers, ","))
	kcmErr := make(chan error, 1)
	go func() {
		kcmErr <- runControllerManager(kcmOpts, kcmFlags, kcmArgs)
	}()
	schedErr := make(chan error, 1)
	if schedOpts != nil {
		go func() {
			schedErr <- runScheduler(schedOpts, []string{
				"--kubeconfig=" + kubeconfigPath,
				"--leader-elect=false",
				"--secure-port=0",
			})
		}()
	}
	fmt.Printf("kube-lab ready: server=%s kubeconfig=%s pid=%d\n", server, kubeconfigPath, os.Getpid())

	select {
	case err := <-apiErr:
		// SIGTERM/SIGINT stop the apiserver's own signal context: a clean end.
		return err
	case err := <-kcmErr:
		return fmt.Errorf("kube-controller-manager stopped: %v", err)
	case err := <-schedErr:
		return fmt.Errorf("kube-scheduler stopped: %v", err)
	}
}

// runScheduler runs kube-scheduler in this process, driven through its
// options (its cobra command would apply logging configuration again).
func runScheduler(opts *scheduleroptions.Options, args []string) error {
	fs := pflag.NewFlagSet("kube-scheduler", pflag.ContinueOnError)
	for _, f := range opts.Flags.FlagSets {
		fs.AddFlagSet(f)
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx := context.Background()
	cc, sched, err := scheduler.Setup(ctx, opts)
	if err != nil {
		return err
	}
	return scheduler.Run(ctx, cc, sched)
}

func runControllerManager(opts *kcmoptions.KubeControllerManagerOptions, named cliflag.NamedFlagSets, args []string) error {
	fs := pflag.NewFlagSet("kube-controller-manager", pflag.ContinueOnError)
	for _, f := range named.FlagSets {
		fs.AddFlagSet(f)
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx := context.Background()
	c, err := opts.Config(ctx, kcm.KnownControllers(), kcm.ControllersDisabledByDefault(), kcm.ControllerAliases())
	if err != nil {
		return err
	}
	return kcm.Run(ctx, c.Complete())
}

func startEtcd(dir string, ports labPorts) (string, func(), error) {
	clientPort, peerPort := ports.EtcdClient, ports.EtcdPeer
	cfg := embed.NewConfig()
	cfg.Name = "lab"
	cfg.Dir = dir
	cfg.UnsafeNoFsync = true
	cfg.LogLevel = "error"
	clientURL := url.URL{Scheme: "http", Host: "127.0.0.1:" + strconv.Itoa(clientPort)}
	peerURL := url.URL{Scheme: "http", Host: "127.0.0.1:" + strconv.Itoa(peerPort)}
	cfg.ListenClientUrls = []url.URL{clientURL}
	cfg.AdvertiseClientUrls = []url.URL{clientURL}
	cfg.ListenPeerUrls = []url.URL{peerURL}
	cfg.AdvertisePeerUrls = []url.URL{peerURL}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return "", nil, err
	}
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(60 * time.Second):
		e.Close()
		return "", nil, fmt.Errorf("etcd not ready after 60s")
	}
	return clientURL.String(), e.Close, nil
}

func waitReady(ctx context.Context, server, token string, pki *labPKI, apiErr <-chan error) error {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pki.caPEM)
	client := &http.Client{
		Timeout:   2 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
	}
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, server+"/readyz", nil)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+token)
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case err := <-apiErr:
			return fmt.Errorf("kube-apiserver exited before ready: %v", err)
		case <-ctx.Done():
			return fmt.Errorf("kube-apiserver not ready: %w", ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func kubeconfig(server, token string, pki *labPKI) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: lab
  cluster:
    server: %s
    certificate-authority: %s
contexts:
- name: lab
  context:
    cluster: lab
    user: lab-admin
current-context: lab
users:
- name: lab-admin
  user:
    token: %s
`, server, pki.CACert, token)
}

func randomToken() (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// freePort asks the kernel for an unused loopback port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// auditedNamespaces are the load balancers' namespaces (barelb's, MetalLB's):
// the apiserver audits the requests of their ServiceAccounts, so
// scripts/bench-peers counts what each speaker and controller asks of it
// (watches held, requests by verb) from the apiserver's own record.
var auditedNamespaces = []string{"barelb-system", "metallb-system"}

// writeAuditPolicy writes a policy that records, at Metadata level, only
// those ServiceAccounts' requests (nothing else: the log stays small), and
// returns the apiserver flags that enable it (DIR/audit.log, JSON lines).
func writeAuditPolicy(dir string) ([]string, error) {
	groups := ""
	for _, ns := range auditedNamespaces {
		groups += fmt.Sprintf("      - system:serviceaccounts:%s\n", ns)
	}
	policy := "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n" +
		"  - level: Metadata\n    userGroups:\n" + groups +
		"  - level: None\n"
	path := filepath.Join(dir, "audit-policy.yaml")
	if err := os.WriteFile(path, []byte(policy), 0o600); err != nil {
		return nil, err
	}
	return []string{
		"--audit-policy-file=" + path,
		"--audit-log-path=" + filepath.Join(dir, "audit.log"),
		"--audit-log-format=json",
		"--audit-log-maxsize=1024",
		"--audit-log-maxbackup=1",
		// Batched, so a burst of requests never waits on the file.
		"--audit-log-mode=batch",
	}, nil
}
