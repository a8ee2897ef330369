//go:build tools

// Package tools pins the Jaeger program this module builds
// (`go build github.com/jaegertracing/jaeger/cmd/jaeger`), so `go mod tidy`
// keeps its dependencies in go.sum.
package tools

import _ "github.com/jaegertracing/jaeger/cmd/jaeger"
