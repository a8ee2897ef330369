// lab-coredns is CoreDNS (github.com/coredns/coredns, the lab cluster's
// cluster DNS, test tooling only) with the plugins a cluster's Corefile
// uses and nothing that reaches outside: no forward, no cloud backends.
// Built like CoreDNS's own main (coredns.go), with a shorter plugin list.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/ready"
)

func init() {
	// The order plugins run in: CoreDNS's plugin.cfg order, cut to these.
	dnsserver.Directives = []string{
		"errors",
		"health",
		"ready",
		"cache",
		"loadbalance",
		"kubernetes",
	}
}

func main() {
	coremain.Run()
}
