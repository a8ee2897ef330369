# tests/lib/e2e.sh — what Kubernetes' own e2e tests need on the lab: sourced
# by scripts/e2e-upstream. Test tooling only, all built here from the lab's
# Kubernetes module (tests/kube-lab/go.mod) and this machine's Debian
# packages, since nothing can be pulled:
#   target/e2e/network.test   the network e2e suite (tests/kube-lab/e2e)
#   target/e2e/agnhost        test/images/agnhost
#   target/e2e/images/*.tar   the images the LoadBalancer specs run, under the
#                             exact names test/utils/image gives them
#   target/e2e/bin/kubectl    the lab's kubectl, for the framework's exec calls
# Go's build cache makes a second build a matter of seconds.

E2E_DIR=$ROOT/target/e2e
E2E_SRC=$ROOT/tests/kube-lab
E2E_KUBE_LAB=$ROOT/target/kube-lab/kube-lab
# test/utils/image/manifest.go of v1.34.4.
E2E_AGNHOST=registry.k8s.io/e2e-test-images/agnhost:2.56
E2E_BUSYBOX=registry.k8s.io/e2e-test-images/busybox:1.37.0-1
E2E_PAUSE=registry.k8s.io/pause:3.10.1

e2e_go() { (cd "$E2E_SRC" && GOTOOLCHAIN=local CGO_ENABLED=0 go "$@"); }

e2e_build() {
  mkdir -p "$E2E_DIR/images" "$E2E_DIR/bin"
  e2e_go test -c -trimpath -o "$E2E_DIR/network.test" ./e2e
  e2e_go build -trimpath -ldflags "-s -w" -o "$E2E_DIR/agnhost" k8s.io/kubernetes/test/images/agnhost
  e2e_go build -trimpath -ldflags "-s -w" -o "$E2E_DIR/lab-pause" ./cmd/lab-pause
  printf '#!/bin/sh\nexec %q kubectl "$@"\n' "$E2E_KUBE_LAB" > "$E2E_DIR/bin/kubectl"
  chmod +x "$E2E_DIR/bin/kubectl"
  e2e_images
}

# Every busybox applet as a symlink in /bin, but those named in $1 (a
# regex of names the image takes from elsewhere).
e2e_applet_links() {
  local a
  for a in $(busybox --list); do
    [ "$a" != busybox ] || continue
    [[ "$a" =~ ^($1)$ ]] || printf -- '--link\0/bin/%s:busybox\0' "$a"
  done
}

e2e_images() {
  local path=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
  local -a links
  # agnhost as upstream builds it on Alpine: busybox's applets, bash, curl
  # and OpenBSD netcat (its Dockerfile's apk add), wget. The shell is dash, not
  # busybox's ash: ash runs its own applets ahead of PATH, so `nc` would
  # be busybox's, not netcat-openbsd's flags.
  mapfile -d '' links < <(e2e_applet_links 'sh|ash|nc|wget')
  # Debian's static busybox crashes in wget (SIGSEGV in its static libc's
  # resolver), so wget is GNU's, made to try once as busybox's does: the
  # specs' `wget -T 5` would otherwise retry a dropped connection 20 times.
  printf 'tries = 1\n' > "$E2E_DIR/wgetrc"
  "$E2E_KUBE_LAB" image --out "$E2E_DIR/images/agnhost.tar" --name "$E2E_AGNHOST" --libs \
    --file "$E2E_DIR/agnhost:/agnhost" --link /agnhost-2:agnhost \
    --file "$(command -v busybox):/bin/busybox" "${links[@]}" \
    --file /usr/bin/dash:/bin/sh --file /usr/bin/bash:/bin/bash \
    --file /usr/bin/curl:/usr/bin/curl --file /usr/bin/nc.openbsd:/usr/bin/nc \
    --file /usr/bin/wget:/usr/bin/wget --file "$E2E_DIR/wgetrc:/etc/wgetrc" \
    --entrypoint /agnhost --arg pause --env "$path" >/dev/null
  mapfile -d '' links < <(e2e_applet_links 'busybox')
  "$E2E_KUBE_LAB" image --out "$E2E_DIR/images/busybox.tar" --name "$E2E_BUSYBOX" \
    --file "$(command -v busybox):/bin/busybox" "${links[@]}" \
    --arg sh --env "$path" >/dev/null
  "$E2E_KUBE_LAB" image --out "$E2E_DIR/images/pause.tar" --name "$E2E_PAUSE" \
    --binary "$E2E_DIR/lab-pause" >/dev/null
}

# The host e2e.test runs in: a namespace on the cluster's LAN whose only
# address, 198.51.100.10/24 (TEST-NET-2), lies outside the nodes' 198.19.0.0/16
# — the source-address specs judge "preserved" by the client being outside
# the nodes' /16, as a real LAN client beyond a router is. Routes to it are
# on-link from the nodes and the control plane's leg; they go with the
# cluster's links. Sets E2E_CLIENT_NS; e2e_client_down removes it.
E2E_CLIENT_IP=198.51.100.10
e2e_client_up() {
  local leg=e2e$$ i n
  # Never shadow a network this machine really has.
  if [ -n "$(ip route show 198.51.100.0/24)" ]; then
    echo "e2e: this machine routes 198.51.100.0/24 already; the e2e client needs it for the lab" >&2
    return 1
  fi
  E2E_CLIENT_NS=lc-e2e-client-$$
  ip netns add "$E2E_CLIENT_NS"
  ip link add "$leg" type veth peer name eth0 netns "$E2E_CLIENT_NS"
  ip link set "$leg" netns lc-lan
  nsenter --net=/run/netns/lc-lan ip link set "$leg" master br0 up
  ip -n "$E2E_CLIENT_NS" link set lo up
  ip -n "$E2E_CLIENT_NS" addr add "$E2E_CLIENT_IP/24" dev eth0
  ip -n "$E2E_CLIENT_NS" link set eth0 up
  ip -n "$E2E_CLIENT_NS" route add 198.19.0.0/24 dev eth0
  n=$(cat "$BARELB_LAB_DIR/nodes.count")
  for i in $(seq 1 "$n"); do
    ip -n "lc-node-$i" route add 198.51.100.0/24 dev eth0
  done
  ip route add 198.51.100.0/24 dev lc-cp
}

e2e_client_down() {
  [ -n "${E2E_CLIENT_NS:-}" ] || return 0
  ip route del 198.51.100.0/24 dev lc-cp 2>/dev/null || true
  ip netns del "$E2E_CLIENT_NS" 2>/dev/null || true
}
