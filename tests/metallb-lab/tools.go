//go:build tools

// Package tools pins MetalLB's controller and speaker (both package main)
// so `go build go.universe.tf/metallb/{controller,speaker}` in this module
// builds them at the version go.mod names.
package tools

import (
	_ "go.universe.tf/metallb/controller"
	_ "go.universe.tf/metallb/speaker"
)
