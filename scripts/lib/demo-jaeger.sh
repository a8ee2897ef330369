# shellcheck shell=bash
# The demo's Jaeger (sourced by scripts/demo): the lab's trace backend
# (target/jaeger/jaeger, built by tests/lab build from its Go module),
# receiving OTLP/gRPC on the control plane's LAN address (198.19.0.1, which
# Pods on the lab's nodes reach) and answering queries on loopback. In-memory
# storage; stopped by PID in jaeger_down. Needs: ROOT, DEMO, wait_for, fail, say.

JAEGER=$DEMO/jaeger

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

jaeger_up() {
  [ -x "$ROOT/target/jaeger/jaeger" ] || fail "no target/jaeger/jaeger: run scripts/setup"
  mkdir -p "$JAEGER"
  local otlp http grpc
  otlp=$(free_port); http=$(free_port); grpc=$(free_port)
  cat >"$JAEGER/jaeger.yaml" <<YML
service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces: {receivers: [otlp], processors: [batch], exporters: [jaeger_storage_exporter]}
  telemetry:
    metrics: {level: none}
    traces: {level: none}
extensions:
  jaeger_query:
    enable_tracing: false
    storage: {traces: memstore}
    http: {endpoint: "127.0.0.1:$http"}
    grpc: {endpoint: "127.0.0.1:$grpc"}
  jaeger_storage:
    backends:
      memstore: {memory: {max_traces: 100000}}
receivers:
  otlp:
    protocols:
      grpc: {endpoint: "198.19.0.1:$otlp"}
processors:
  batch: {timeout: 200ms}
exporters:
  jaeger_storage_exporter: {trace_storage: memstore}
YML
  "$ROOT/target/jaeger/jaeger" --config "file:$JAEGER/jaeger.yaml" >"$JAEGER/jaeger.log" 2>&1 &
  echo $! >"$JAEGER/jaeger.pid"
  JAEGER_URL=http://127.0.0.1:$http
  JAEGER_OTLP=http://198.19.0.1:$otlp
  wait_for "Jaeger answers" 30 curl -sf "$JAEGER_URL/api/services"
}

jaeger_down() {
  [ -f "$JAEGER/jaeger.pid" ] || return 0
  kill "$(cat "$JAEGER/jaeger.pid")" 2>/dev/null || true
  rm -f "$JAEGER/jaeger.pid"
}

# jaeger_spans TRACE_ID: one line per span, in start order: offset, process,
# operation and the attributes that say what it did.
jaeger_spans() {
  curl -sf "$JAEGER_URL/api/traces/$1" | jq -r '.data[0] as $t | ($t.spans | map(.startTime) | min) as $t0
    | $t.spans | sort_by(.startTime)[]
    | "+\(((.startTime - $t0) / 1000 * 10 | floor) / 10) ms  \($t.processes[.processID].serviceName) \(.operationName)  \([.tags[] | select(.key | test("^(service|addresses|address|pool|outcome|cause|node|quiet|k8s)")) | "\(.key)=\(.value)"] | join(" "))"'
}

# jaeger_allocation SERVICE ADDRESS: prints the trace in which SERVICE
# (ns/name) got ADDRESS, from the operator's reconcile to the speaker's
# announcement; fails when there is none within 20 s.
jaeger_allocation() {
  local svc=$1 addr=$2 id="" end=$((SECONDS + 20)) t
  while [ -z "$id" ] && [ $SECONDS -lt $end ]; do
    for t in $(curl -sfG "$JAEGER_URL/api/traces" --data-urlencode service=barelb-operator \
      --data-urlencode operation=reconcile --data-urlencode "tags={\"service\":\"$svc\"}" \
      --data-urlencode lookback=2h --data-urlencode limit=100 | jq -r '.data[].traceID'); do
      if curl -sf "$JAEGER_URL/api/traces/$t" | jq -e --arg a "$addr" \
        '.data[0] as $d | any($d.spans[]; .operationName == "announce" and $d.processes[.processID].serviceName == "barelb-speaker" and any(.tags[]; .key == "address" and .value == $a))' >/dev/null; then
        id=$t; break
      fi
    done
    [ -n "$id" ] || sleep 1
  done
  [ -n "$id" ] || fail "Jaeger has no trace of $svc reaching a speaker's announcement of $addr"
  say "trace $id: $JAEGER_URL/trace/$id"
  jaeger_spans "$id" | sed 's/^/    /'
}
