// Package e2e runs Kubernetes' own network e2e tests — those labelled
// [Feature:LoadBalancer] by scripts/e2e-upstream — against the lab cluster
// with barelb installed. Test tooling, never shipped: built with
// `go test -c` from the same Kubernetes module as the lab.
//
// It is upstream's test/e2e/e2e_test.go cut down to the network suite:
// the whole suite links every cloud provider's SDK and every other SIG's
// tests, which the LoadBalancer tests do not need.
package e2e

import (
	"flag"
	"os"
	"testing"

	"github.com/onsi/ginkgo/v2"
	"github.com/onsi/gomega"
	"k8s.io/component-base/logs"
	"k8s.io/kubernetes/test/e2e/framework"
	"k8s.io/kubernetes/test/e2e/framework/config"

	// Side effects, as upstream's suite has them: the network tests
	// register themselves; the init packages wire node and debug helpers
	// into the framework.
	_ "k8s.io/kubernetes/test/e2e/framework/debug/init"
	_ "k8s.io/kubernetes/test/e2e/framework/node/init"
	_ "k8s.io/kubernetes/test/e2e/network"
)

func TestMain(m *testing.M) {
	config.CopyFlags(config.Flags, flag.CommandLine)
	framework.RegisterCommonFlags(flag.CommandLine)
	framework.RegisterClusterFlags(flag.CommandLine)
	flag.Parse()
	framework.AfterReadingAllFlags(&framework.TestContext)
	os.Exit(m.Run())
}

func TestNetworkE2E(t *testing.T) {
	logs.InitLogs()
	defer logs.FlushLogs()
	gomega.RegisterFailHandler(framework.Fail)
	suite, reporter := framework.CreateGinkgoConfig()
	ginkgo.RunSpecs(t, "Kubernetes network e2e on the barelb lab", suite, reporter)
}
