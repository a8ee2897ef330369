// Command lab-backend is the lab's test backend: it answers every HTTP
// request on --listen with one line naming the pod and node that answered
// (POD_NAME and NODE_NAME from the downward API) and the client's address,
// so a test can tell which endpoint kube-proxy chose and what source it saw.
package main

import (
	"flag"
	"fmt"
	"net/http"
	"os"
)

func main() {
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
