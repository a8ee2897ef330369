// Command lab-backend is the lab's test backend. Served (the default), it
// answers every HTTP request on --listen with one line naming the pod and
// node that answered (POD_NAME and NODE_NAME from the downward API) and the
// client's address, so a test can tell which endpoint kube-proxy chose and
// what source it saw. Its other modes are probes a test runs inside a Pod
// with `kubectl exec` (the image has nothing else):
//
//	lab-backend get URL       print the body of GET URL (exit 1 on failure)
//	lab-backend interfaces    print "NAME ADDR..." per interface
//	lab-backend packet IFACE  open an AF_PACKET socket on IFACE (needs NET_RAW)
package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) > 1 && !strings.HasPrefix(os.Args[1], "-") {
		if err := probe(os.Args[1], os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	serve()
}

func serve() {
	listen := flag.String("listen", ":8080", "address to serve on")
	flag.Parse()
	pod, node := os.Getenv("POD_NAME"), os.Getenv("NODE_NAME")
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "pod=%s node=%s client=%s\n", pod, node, r.RemoteAddr)
	})
	if err := http.ListenAndServe(*listen, nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func probe(mode string, args []string) error {
	switch mode {
	case "get":
		if len(args) != 1 {
			return fmt.Errorf("usage: lab-backend get URL")
		}
		c := http.Client{Timeout: 5 * time.Second}
		resp, err := c.Get(args[0])
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		_, err = io.Copy(os.Stdout, resp.Body)
		return err
	case "interfaces":
		ifs, err := net.Interfaces()
		if err != nil {
			return err
		}
		for _, i := range ifs {
			addrs, _ := i.Addrs()
			fmt.Print(i.Name)
			for _, a := range addrs {
				fmt.Print(" ", a.String())
			}
			fmt.Println()
		}
		return nil
	case "packet":
		if len(args) != 1 {
			return fmt.Errorf("usage: lab-backend packet IFACE")
		}
		ifc, err := net.InterfaceByName(args[0])
		if err != nil {
			return err
		}
		const ethPAll = 0x0300 // htons(ETH_P_ALL)
		fd, err := syscall.Socket(syscall.AF_PACKET, syscall.SOCK_RAW, ethPAll)
		if err != nil {
			return fmt.Errorf("AF_PACKET socket: %w", err)
		}
		defer syscall.Close(fd)
		if err := syscall.Bind(fd, &syscall.SockaddrLinklayer{Protocol: ethPAll, Ifindex: ifc.Index}); err != nil {
			return fmt.Errorf("bind to %s: %w", args[0], err)
		}
		fmt.Printf("AF_PACKET socket bound to %s (index %d)\n", ifc.Name, ifc.Index)
		return nil
	}
	return fmt.Errorf("unknown mode %q (get, interfaces, packet)", mode)
}
