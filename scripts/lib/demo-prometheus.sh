# shellcheck shell=bash
# The demo's Prometheus (sourced by scripts/demo): Debian's prometheus on
# loopback, scraping barelb every 2 s with barelb's alerts loaded. Debian
# builds it without Kubernetes service discovery, so prom_targets writes the
# targets deploy/prometheus/scrape-config.yaml would find (the metrics
# Services' EndpointSlices) to a file-SD file. Stopped by PID in prom_down.
# Needs: ROOT, DEMO, K (kubectl), wait_for, fail.

PROM=$DEMO/prometheus

# prom_targets: (re)writes the targets: every endpoint of the operator's and
# speakers' metrics Services, labelled component, node and pod.
prom_targets() {
  local c
  for c in operator speaker; do
    K -n barelb-system get endpointslices -l "kubernetes.io/service-name=barelb-$c-metrics" -o json |
      jq --arg c "$c" '[.items[] | select(.addressType == "IPv4")
        | (.ports[] | select(.name == "metrics") | .port) as $p | .endpoints[]?
        | {targets: ["\(.addresses[0]):\($p)"], labels: {component: $c, node: (.nodeName // ""), pod: (.targetRef.name // "")}}]'
  done | jq -s add >"$PROM/targets.json.tmp"
  mv "$PROM/targets.json.tmp" "$PROM/targets.json"
}

prom_up() {
  command -v prometheus >/dev/null || fail "no prometheus: run scripts/setup"
  mkdir -p "$PROM/data"
  prom_targets
  local port; port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  cat >"$PROM/prometheus.yml" <<YML
global: {scrape_interval: 2s, evaluation_interval: 2s}
rule_files: [$ROOT/deploy/prometheus/barelb.rules.yaml]
scrape_configs:
  - job_name: barelb
    file_sd_configs: [{files: [$PROM/targets.json], refresh_interval: 2s}]
YML
  prometheus --config.file="$PROM/prometheus.yml" --storage.tsdb.path="$PROM/data" \
    --web.listen-address="127.0.0.1:$port" >"$PROM/prometheus.log" 2>&1 &
  echo $! >"$PROM/prometheus.pid"
  PROM_URL=http://127.0.0.1:$port
  echo "$PROM_URL" >"$PROM/url"
  wait_for "Prometheus is ready" 30 curl -sf "$PROM_URL/-/ready"
}

prom_down() {
  [ -f "$PROM/prometheus.pid" ] || return 0
  kill "$(cat "$PROM/prometheus.pid")" 2>/dev/null || true
  rm -f "$PROM/prometheus.pid"
}

# prom_query QUERY: one line per series, "labels value".
prom_query() {
  curl -sfG "$PROM_URL/api/v1/query" --data-urlencode "query=$1" |
    jq -r '.data.result[] | "\(.metric | to_entries | map("\(.key)=\(.value)") | join(",")) \(.value[1])"'
}

# prom_row TITLE QUERY: the row's title and the query's result; fails when
# it returns nothing within 20 s.
prom_row() {
  local title=$1 q=$2 out="" end=$((SECONDS + 20))
  while [ -z "$out" ] && [ $SECONDS -lt $end ]; do
    out=$(prom_query "$q") || true
    [ -n "$out" ] || sleep 1
  done
  [ -n "$out" ] || fail "dashboard row \"$title\": $q returned nothing"
  say "$title — $q"
  while read -r line; do say "    $line"; done <<<"$out"
}
