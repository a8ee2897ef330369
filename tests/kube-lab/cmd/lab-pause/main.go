// Command lab-pause is the lab's pod sandbox image: it sleeps until told to
// stop (the role of registry.k8s.io/pause, which cannot be pulled here).
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	<-stop
}
