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
//
// and one a test runs on a client host (the static binary, outside any Pod):
//
//	lab-backend poll [--every D] [--timeout D] URL...
//	                          GET every URL each D on a new connection until
//	                          SIGINT/SIGTERM, then print one summary line per
//	                          URL: requests, failures (and when the last
//	                          failed one was sent), the longest time
//	                          without an answer, and which node answered
package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
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
	case "poll":
		return poll(args)
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
	return fmt.Errorf("unknown mode %q (get, interfaces, packet, poll)", mode)
}

// tally is what one URL's poller saw.
type tally struct {
	requests, failed int
	lastOK, start    time.Time
	lastFailedSent   time.Time
	longestGap       time.Duration
	nodes            map[string]int
	firstErr         string
}

func poll(args []string) error {
	fs := flag.NewFlagSet("poll", flag.ContinueOnError)
	every := fs.Duration("every", 10*time.Millisecond, "time between requests")
	timeout := fs.Duration("timeout", time.Second, "a request unanswered this long failed")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return fmt.Errorf("usage: lab-backend poll [--every D] [--timeout D] URL...")
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	done := make(chan struct{})
	var wg sync.WaitGroup
	tallies := make([]*tally, fs.NArg())
	for i, url := range fs.Args() {
		t := &tally{start: time.Now(), nodes: map[string]int{}}
		t.lastOK = t.start
		tallies[i] = t
		wg.Add(1)
		go func(url string, t *tally) {
			defer wg.Done()
			// A new connection per request: each one is routed afresh.
			c := http.Client{Timeout: *timeout, Transport: &http.Transport{DisableKeepAlives: true}}
			tick := time.NewTicker(*every)
			defer tick.Stop()
			for {
				select {
				case <-done:
					return
				case <-tick.C:
				}
				t.requests++
				sent := time.Now()
				node, err := getNode(&c, url)
				now := time.Now()
				if err != nil {
					t.failed++
					t.lastFailedSent = sent
					if t.firstErr == "" {
						t.firstErr = err.Error()
					}
					continue
				}
				if gap := now.Sub(t.lastOK); gap > t.longestGap {
					t.longestGap = gap
				}
				t.lastOK = now
				t.nodes[node]++
			}
		}(url, t)
	}
	<-stop
	close(done)
	wg.Wait()
	for i, url := range fs.Args() {
		t := tallies[i]
		if gap := time.Since(t.lastOK); gap > t.longestGap+*every {
			t.longestGap = gap
		}
		names := make([]string, 0, len(t.nodes))
		for n, c := range t.nodes {
			names = append(names, fmt.Sprintf("%s:%d", n, c))
		}
		sort.Strings(names)
		lastFailed := int64(0)
		if !t.lastFailedSent.IsZero() {
			lastFailed = t.lastFailedSent.UnixMilli()
		}
		fmt.Printf("url=%s requests=%d failed=%d longest_gap_ms=%d last_failed_unix_ms=%d nodes=%s first_error=%q\n",
			url, t.requests, t.failed, t.longestGap.Milliseconds(), lastFailed, strings.Join(names, ","), t.firstErr)
	}
	return nil
}

// getNode GETs url and returns the node= field of the backend's answer.
func getNode(c *http.Client, url string) (string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %d", resp.StatusCode)
	}
	for _, f := range strings.Fields(string(body)) {
		if strings.HasPrefix(f, "node=") {
			return strings.TrimPrefix(f, "node="), nil
		}
	}
	return "", fmt.Errorf("answer names no node: %q", body)
}
