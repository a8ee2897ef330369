# tests/lib/cluster.sh — the lab's nodes: sourced by tests/lab for
# `tests/lab up --nodes N`. Each node is a network namespace on the lab LAN
# running its own containerd + runc, kubelet, CNI (bridge + host-local) and
# kube-proxy; the control plane binds a lab-only address on a veth from the
# root namespace into the LAN. Every address here exists only inside the lab.
#
# Layout (all lab-only ranges, dual stack):
#   LAN            198.19.0.0/24 and 2001:db8:19::/64: control plane .1 / ::1,
#                  node-I .(10+I) / ::(10+I)
#   Pod CIDRs      198.18.(128+I).0/24 and 2001:db8:18:(80+I)::/64 for node-I;
#                  cluster CIDRs 198.18.128.0/17 and 2001:db8:18::/48
#   Services       10.96.0.0/16 and fd00:10:96::/108 (virtual: only kube-proxy's
#                  rules in the nodes know them); cluster DNS 10.96.0.10
#   MACs           node-I eth0 02:b1:00:00:00:<hex 10+I>
# Names: namespaces lc-lan and lc-node-I, root veth lc-cp, cgroups lc-node-I.

CL_LAN_NS=lc-lan
CL_CP_IF=lc-cp
CL_CP_IP=198.19.0.1
CL_CP_IP6=2001:db8:19::1
CL_CLUSTER_CIDR=198.18.128.0/17,2001:db8:18::/48
CL_SERVICE_CIDR=10.96.0.0/16
CL_SERVICE_CIDR6=fd00:10:96::/108
CL_DNS_IP=10.96.0.10 # kube-dns (tests/lib/coredns.yaml)
CL_NODES_DIR=$LAB_DIR/nodes
CL_IMAGES_DIR=$LAB_DIR/images
CL_CGROUP_CONTROLLERS=(blkio cpu cpuacct cpuset devices freezer memory pids systemd)

cl_node_ip() { echo "198.19.0.$((10 + $1))"; }
cl_node_ip6() { echo "2001:db8:19::$((10 + $1))"; }
cl_pod_cidr() { echo "198.18.$((128 + $1)).0/24"; }
cl_pod_gw() { echo "198.18.$((128 + $1)).1"; }
cl_pod_cidr6() { echo "2001:db8:18:$((80 + $1))::/64"; }
cl_pod_gw6() { echo "2001:db8:18:$((80 + $1))::1"; }
cl_ns() { echo "lc-node-$1"; }
cl_node_mac() { printf '02:b1:00:00:00:%02x\n' $((10 + $1)); }
cl_nsexec() { local ns=$1; shift; nsenter --net="/run/netns/$ns" "$@"; }

# The static binaries and images the nodes run: a pause image (the pod
# sandbox; registry.k8s.io/pause cannot be pulled here), the test backend
# and CoreDNS (the cluster's DNS).
cl_build_images() {
  mkdir -p "$CL_IMAGES_DIR"
  local b
  for b in lab-pause lab-backend lab-coredns; do
    if [ ! -x "$CL_IMAGES_DIR/$b" ] || [ -n "$(find "$SRC/cmd/$b" -newer "$CL_IMAGES_DIR/$b" -type f | head -1)" ]; then
      (cd "$SRC" && GOTOOLCHAIN=local CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$CL_IMAGES_DIR/$b" "./cmd/$b")
    fi
  done
  "$BIN" image --out "$CL_IMAGES_DIR/pause.tar" --binary "$CL_IMAGES_DIR/lab-pause" \
    --name registry.k8s.io/pause:3.10 >/dev/null
  "$BIN" image --out "$CL_IMAGES_DIR/backend.tar" --binary "$CL_IMAGES_DIR/lab-backend" \
    --name barelb.io/lab-backend:1 >/dev/null
  "$BIN" image --out "$CL_IMAGES_DIR/coredns.tar" --binary "$CL_IMAGES_DIR/lab-coredns" \
    --name barelb.io/lab-coredns:1.12.4 >/dev/null
}

# The LAN: a bridge in its own namespace, and the control plane's leg.
cl_lan_up() {
  ip netns add "$CL_LAN_NS"
  cl_nsexec "$CL_LAN_NS" ip link add br0 type bridge
  cl_nsexec "$CL_LAN_NS" ip link set br0 up
  cl_nsexec "$CL_LAN_NS" ip link set lo up
  ip link add "$CL_CP_IF" type veth peer name cp netns "$CL_LAN_NS"
  cl_nsexec "$CL_LAN_NS" ip link set cp master br0 up
  ip addr add "$CL_CP_IP/24" dev "$CL_CP_IF"
  ip addr add "$CL_CP_IP6/64" dev "$CL_CP_IF" nodad
  ip link set "$CL_CP_IF" up
}

# Node I's routes to the other N-1 nodes' Pods. Taking eth0 down (a cut)
# flushes them: uncut puts them back.
cl_pod_routes() {
  local i=$1 n=$2 ns j; ns=$(cl_ns "$i")
  for j in $(seq 1 "$n"); do
    [ "$j" = "$i" ] && continue
    cl_nsexec "$ns" ip route replace "$(cl_pod_cidr "$j")" via "$(cl_node_ip "$j")"
    cl_nsexec "$ns" ip -6 route replace "$(cl_pod_cidr6 "$j")" via "$(cl_node_ip6 "$j")"
  done
}

# Node I's network: its LAN leg, routes to the other nodes' Pods, and a
# blind interface for the Service range (so the node's own connections to
# a ClusterIP find a route before kube-proxy's rules rewrite them; nothing
# leaves the lab).
cl_node_net() {
  local i=$1 n=$2 ns; ns=$(cl_ns "$i")
  ip netns add "$ns"
  ip link add "n$i" type veth peer name eth0 netns "$ns"
  ip link set "n$i" netns "$CL_LAN_NS"
  cl_nsexec "$CL_LAN_NS" ip link set "n$i" master br0 up
  cl_nsexec "$ns" ip link set lo up
  # A MAC that reads back as the node (tests and the demo map ARP answers so).
  cl_nsexec "$ns" ip link set eth0 address "$(cl_node_mac "$i")"
  cl_nsexec "$ns" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
  # A cut (eth0 down) must not cost the node its IPv6 address.
  cl_nsexec "$ns" sysctl -qw net.ipv6.conf.eth0.keep_addr_on_down=1
  cl_nsexec "$ns" ip addr add "$(cl_node_ip "$i")/24" dev eth0
  cl_nsexec "$ns" ip addr add "$(cl_node_ip6 "$i")/64" dev eth0 nodad
  cl_nsexec "$ns" ip link set eth0 up
  # (A veth pair, not a dummy device: this kernel has no dummy driver.)
  cl_nsexec "$ns" ip link add svc0 type veth peer name svc1
  cl_nsexec "$ns" ip link set svc1 up
  cl_nsexec "$ns" ip link set svc0 up
  cl_nsexec "$ns" ip route add "$CL_SERVICE_CIDR" dev svc0
  cl_nsexec "$ns" ip -6 route add "$CL_SERVICE_CIDR6" dev svc0
  cl_pod_routes "$i" "$n"
  cl_nsexec "$ns" sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
  cl_nsexec "$ns" sysctl -qw net.bridge.bridge-nf-call-iptables=1 2>/dev/null || true
  # The control plane (root namespace) reaches this node's Pods (webhooks).
  ip route add "$(cl_pod_cidr "$i")" via "$(cl_node_ip "$i")" dev "$CL_CP_IF"
  ip -6 route add "$(cl_pod_cidr6 "$i")" via "$(cl_node_ip6 "$i")" dev "$CL_CP_IF"
}

# Node I's cgroup parent in every v1 controller (cpuset needs its parent's
# cpus and mems before anything can join it).
cl_node_cgroups() {
  local i=$1 c d
  for c in "${CL_CGROUP_CONTROLLERS[@]}"; do
    d=/sys/fs/cgroup/$c/$(cl_ns "$i")
    [ -d "/sys/fs/cgroup/$c" ] || continue
    mkdir -p "$d"
    if [ "$c" = cpuset ]; then
      cat /sys/fs/cgroup/cpuset/cpuset.cpus > "$d/cpuset.cpus"
      cat /sys/fs/cgroup/cpuset/cpuset.mems > "$d/cpuset.mems"
    fi
  done
}

cl_kubeconfig() { # FILE USER-CERT-PREFIX
  cat > "$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: lab
  cluster:
    server: $CL_SERVER
    certificate-authority: $STATE/ca.crt
contexts:
- name: lab
  context: {cluster: lab, user: me}
current-context: lab
users:
- name: me
  user:
    client-certificate: $2.crt
    client-key: $2.key
EOF
}

# containerd, kubelet and kube-proxy for node I, each started in the node's
# network namespace (nsenter, not `ip netns exec`, which remounts /sys and
# hides the cgroup tree) and recorded by PID.
cl_node_start() {
  local i=$1 ns dir ip; ns=$(cl_ns "$i"); dir=$CL_NODES_DIR/node-$i; ip=$(cl_node_ip "$i")
  mkdir -p "$dir"/{containerd,kubelet,cni/net.d,pods-logs,pids}
  cat > "$dir/cni/net.d/10-lab.conflist" <<EOF
{"cniVersion": "0.4.0", "name": "lab-node-$i", "plugins": [
  {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local",
            "ranges": [[{"subnet": "$(cl_pod_cidr "$i")", "gateway": "$(cl_pod_gw "$i")"}],
                       [{"subnet": "$(cl_pod_cidr6 "$i")", "gateway": "$(cl_pod_gw6 "$i")"}]],
            "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}],
            "dataDir": "$dir/cni/ipam"}},
  {"type": "portmap", "capabilities": {"portMappings": true}}
]}
EOF
  cat > "$dir/containerd/config.toml" <<EOF
version = 2
root = "$dir/containerd/root"
state = "$dir/containerd/state"
[grpc]
  address = "$dir/containerd/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.10"
  # Root here lacks CAP_SYS_RESOURCE: no oom_score_adj below containerd's own.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$dir/containerd/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$dir/cni/net.d"
EOF
  setsid nsenter --net="/run/netns/$ns" containerd --config "$dir/containerd/config.toml" \
    >"$dir/containerd.log" 2>&1 </dev/null &
  echo $! > "$dir/pids/containerd"
  local sock=$dir/containerd/containerd.sock start=$SECONDS
  until ctr -a "$sock" version >/dev/null 2>&1; do
    [ $((SECONDS - start)) -lt 30 ] || { say "node-$i: containerd did not start; see $dir/containerd.log"; return 1; }
    sleep 0.2
  done
  ctr -a "$sock" -n k8s.io images import --all-platforms "$CL_IMAGES_DIR/pause.tar" >/dev/null
  ctr -a "$sock" -n k8s.io images import --all-platforms "$CL_IMAGES_DIR/backend.tar" >/dev/null
  ctr -a "$sock" -n k8s.io images import --all-platforms "$CL_IMAGES_DIR/coredns.tar" >/dev/null

  "$BIN" cert --dir "$STATE" --cn "system:node:node-$i" --org system:nodes --out "$dir/kubelet/client"
  cl_kubeconfig "$dir/kubelet/kubeconfig" "$dir/kubelet/client"
  cat > "$dir/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
cgroupRoot: /$ns
failSwapOn: false
address: $ip
healthzBindAddress: 127.0.0.1
readOnlyPort: 0
podLogsDir: $dir/pods-logs
evictionHard: {memory.available: 1Mi}
# Never collect images: the nodes share the host's disk with the builds
# (usage near 85 % of it once made the kubelets delete the pause image,
# which cannot be pulled here, and no Pod could start again).
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
enforceNodeAllocatable: []
makeIPTablesUtilChains: false
# Pods resolve through the cluster's DNS only (the host's resolver is not
# the lab's to use).
resolvConf: ""
clusterDNS: [$CL_DNS_IP]
clusterDomain: cluster.local
authentication:
  anonymous: {enabled: false}
  x509: {clientCAFile: $STATE/ca.crt}
  webhook: {enabled: false}
authorization: {mode: AlwaysAllow}
serializeImagePulls: false
nodeStatusUpdateFrequency: 2s
EOF
  setsid nsenter --net="/run/netns/$ns" "$BIN" kubelet \
    --config "$dir/kubelet/config.yaml" --kubeconfig "$dir/kubelet/kubeconfig" \
    --root-dir "$dir/kubelet/root" --cert-dir "$dir/kubelet/pki" \
    --hostname-override "node-$i" --node-ip "$ip,$(cl_node_ip6 "$i")" \
    --container-runtime-endpoint "unix://$sock" \
    >"$dir/kubelet.log" 2>&1 </dev/null &
  echo $! > "$dir/pids/kubelet"

  "$BIN" cert --dir "$STATE" --cn system:kube-proxy --out "$dir/kube-proxy"
  cl_kubeconfig "$dir/kube-proxy.kubeconfig" "$dir/kube-proxy"
  cat > "$dir/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection: {kubeconfig: $dir/kube-proxy.kubeconfig}
hostnameOverride: node-$i
clusterCIDR: $CL_CLUSTER_CIDR
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
conntrack: {maxPerCore: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
  setsid nsenter --net="/run/netns/$ns" "$BIN" kube-proxy --config "$dir/kube-proxy.yaml" \
    >"$dir/kube-proxy.log" 2>&1 </dev/null &
  echo $! > "$dir/pids/kube-proxy"
}

# What a cluster that ended without `down` (a killed run, another checkout)
# left of its network: its namespaces and the control plane's veth go, so
# the names are free again. Its processes are gone with the run.
cl_reset_stale() {
  local x c
  for x in $(ip netns list 2>/dev/null | awk '/^lc-/{print $1}'); do
    say "removing a stale lab namespace: $x"
    for p in $(ip netns pids "$x" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
    ip netns del "$x" 2>/dev/null || true
  done
  ip link del "$CL_CP_IF" 2>/dev/null || true
  for c in "${CL_CGROUP_CONTROLLERS[@]}"; do
    for x in /sys/fs/cgroup/"$c"/lc-node-*; do
      [ -d "$x" ] && { find "$x" -depth -type d -exec rmdir {} \; 2>/dev/null || true; }
    done
  done
}

# Up: the LAN, the control plane on it, then N nodes, Ready.
cl_up() {
  local n=$1 i
  cl_reset_stale
  cl_build_images
  # What exists before the lab, so `down` removes only what it made.
  ip netns list 2>/dev/null | awk '/^cni-/{print $1}' > "$LAB_DIR/cni-netns.before"
  cl_lan_up
  # BARELB_LAB_NODE_GRACE: how long before a silent node is NotReady (20s;
  # Kubernetes' default is 50s).
  serve_args=(--bind "$CL_CP_IP" --nodes --node-grace "${BARELB_LAB_NODE_GRACE:-20s}")
  start_control_plane
  CL_SERVER=$(awk '/server:/{print $2; exit}' "$KUBECONFIG_FILE")
  echo "$n" > "$LAB_DIR/nodes.count"
  for i in $(seq 1 "$n"); do
    cl_node_net "$i" "$n"
    cl_node_cgroups "$i"
    cl_node_start "$i" || return 1
  done
  local start=$SECONDS ready
  for i in $(seq 1 "$n"); do
    until "$BIN" kubectl --kubeconfig "$KUBECONFIG_FILE" get node "node-$i" >/dev/null 2>&1; do
      [ $((SECONDS - start)) -lt 120 ] || { say "node-$i never registered; see $CL_NODES_DIR/node-$i/kubelet.log"; return 1; }
      sleep 0.5
    done
    "$BIN" kubectl --kubeconfig "$KUBECONFIG_FILE" patch node "node-$i" --type merge \
      -p "{\"spec\":{\"podCIDR\":\"$(cl_pod_cidr "$i")\",\"podCIDRs\":[\"$(cl_pod_cidr "$i")\",\"$(cl_pod_cidr6 "$i")\"]}}" >/dev/null
  done
  until ready=$("$BIN" kubectl --kubeconfig "$KUBECONFIG_FILE" get nodes --no-headers 2>/dev/null | awk '$2=="Ready"' | wc -l) && [ "$ready" -eq "$n" ]; do
    [ $((SECONDS - start)) -lt 180 ] || { say "only $ready of $n nodes Ready after 180s"; "$BIN" kubectl --kubeconfig "$KUBECONFIG_FILE" get nodes >&2; return 1; }
    sleep 0.5
  done
  say "$n nodes Ready in $((SECONDS - start))s"
  cl_dns_up
}

# CoreDNS as kube-dns, Ready before the cluster counts as up: Pods rely on
# it as on any cluster's.
cl_dns_up() {
  local start=$SECONDS k=("$BIN" kubectl --kubeconfig "$KUBECONFIG_FILE")
  "${k[@]}" apply -f "$ROOT/tests/lib/coredns.yaml" >/dev/null || { say "CoreDNS: apply failed"; return 1; }
  "${k[@]}" -n kube-system rollout status deployment/coredns --timeout=120s >/dev/null || {
    say "CoreDNS did not become Ready:"
    "${k[@]}" -n kube-system get pods -l k8s-app=kube-dns -o wide >&2
    "${k[@]}" -n kube-system logs -l k8s-app=kube-dns --tail=20 >&2
    return 1
  }
  say "cluster DNS ($CL_DNS_IP) Ready in $((SECONDS - start))s"
}

cl_kill_pidfile() {
  local f=$1 pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$f"
}

# Every process in a node's cgroups: its Pods' containers and their shims.
cl_cgroup_pids() {
  local i=$1 c
  for c in pids memory cpu; do
    [ -d "/sys/fs/cgroup/$c/$(cl_ns "$i")" ] || continue
    find "/sys/fs/cgroup/$c/$(cl_ns "$i")" -name cgroup.procs -exec cat {} + 2>/dev/null
  done | sort -u
}

# Down: everything cl_up made, in reverse, also after a failed up.
cl_down() {
  local n i dir pids p
  # Only a directory that brought a cluster up takes one down: the LAN and
  # client names are shared, and the plain lab's `down` must not remove
  # those of a cluster another directory runs.
  [ -f "$LAB_DIR/cni-netns.before" ] || [ -f "$LAB_DIR/nodes.count" ] || return 0
  n=$(cat "$LAB_DIR/nodes.count" 2>/dev/null || echo 0)
  for i in $(seq 1 "$n"); do
    dir=$CL_NODES_DIR/node-$i
    cl_kill_pidfile "$dir/pids/kubelet"
    cl_kill_pidfile "$dir/pids/kube-proxy"
    # Shims of this node's containerd, then whatever its Pods left running.
    pids=$(pgrep -f "containerd-shim-runc-v2 .*-address $dir/containerd/containerd.sock" || true)
    [ -z "$pids" ] || kill -KILL $pids 2>/dev/null || true
    for p in $(cl_cgroup_pids "$i"); do kill -KILL "$p" 2>/dev/null || true; done
    cl_kill_pidfile "$dir/pids/containerd"
  done
  # Mounts under the nodes' directories (kubelet's root, overlay rootfs,
  # projected volumes, shm), deepest first.
  if [ -d "$CL_NODES_DIR" ]; then
    awk -v d="$CL_NODES_DIR" '$2 ~ "^"d {print $2}' /proc/self/mounts | sort -r | while read -r m; do
      umount -l "$m" 2>/dev/null || true
    done
  fi
  # Pod network namespaces the CRI made.
  if [ -f "$LAB_DIR/cni-netns.before" ]; then
    # (grep finds nothing once they are gone: not a failure.)
    { ip netns list 2>/dev/null | awk '/^cni-/{print $1}' | grep -vxF -f "$LAB_DIR/cni-netns.before" || true; } |
      while read -r x; do ip netns del "$x" 2>/dev/null || true; done
  fi
  for i in $(seq 1 "$n"); do
    ip netns del "$(cl_ns "$i")" 2>/dev/null || true
    for c in "${CL_CGROUP_CONTROLLERS[@]}" unified; do
      [ -d "/sys/fs/cgroup/$c/$(cl_ns "$i")" ] || continue
      find "/sys/fs/cgroup/$c/$(cl_ns "$i")" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    done
  done
  # Log links the kubelets made in the machine-wide log directory.
  find /var/log/containers -maxdepth 1 -type l -lname "$CL_NODES_DIR/*" -delete 2>/dev/null || true
  # Client hosts tests put on the LAN and did not remove.
  ip netns list 2>/dev/null | awk '/^lc-client-/{print $1}' | while read -r x; do ip netns del "$x"; done
  ip link del "$CL_CP_IF" 2>/dev/null || true
  ip netns del "$CL_LAN_NS" 2>/dev/null || true
  rm -rf "$CL_NODES_DIR" "$LAB_DIR/nodes.count" "$LAB_DIR/cni-netns.before"
}

# Whether every process of every node still runs.
cl_healthy() {
  local n i what pid
  n=$(cat "$LAB_DIR/nodes.count" 2>/dev/null || echo 0)
  for i in $(seq 1 "$n"); do
    for what in containerd kubelet kube-proxy; do
      pid=$(cat "$CL_NODES_DIR/node-$i/pids/$what" 2>/dev/null || true)
      [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    done
  done
}

# One line per node: its processes and whether they run.
cl_status() {
  local n i dir what pid
  n=$(cat "$LAB_DIR/nodes.count" 2>/dev/null || echo 0)
  for i in $(seq 1 "$n"); do
    dir=$CL_NODES_DIR/node-$i
    printf 'node-%s (%s):' "$i" "$(cl_node_ip "$i")"
    for what in containerd kubelet kube-proxy; do
      pid=$(cat "$dir/pids/$what" 2>/dev/null || true)
      if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then printf ' %s=%s' "$what" "$pid"; else printf ' %s=down' "$what"; fi
    done
    echo
  done
}

# Faults a test injects on node I, and their undoing:
#   stop-kubelet / start-kubelet   the kubelet process alone
#   freeze / thaw                  SIGSTOP / SIGCONT every process of the node
#   cut / uncut                    pull the node's LAN cable (link down)
#   partition / heal               drop its traffic to and from the control
#                                  plane only; the LAN stays up
#   kill                           every process of the node, cable pulled
#                                  (undone only by a new lab)
cl_node_pids() {
  local i=$1 dir=$CL_NODES_DIR/node-$1 f
  for f in "$dir"/pids/*; do [ -f "$f" ] && cat "$f"; done
  pgrep -f "containerd-shim-runc-v2 .*-address $dir/containerd/containerd.sock" || true
  cl_cgroup_pids "$i"
}

cl_fault() {
  local i=${1:?node number} what=${2:?fault} ns dir; ns=$(cl_ns "$i"); dir=$CL_NODES_DIR/node-$i
  [ -d "$dir" ] || { say "no node $i"; exit 1; }
  case "$what" in
    stop-kubelet) cl_kill_pidfile "$dir/pids/kubelet" ;;
    start-kubelet)
      setsid nsenter --net="/run/netns/$ns" "$BIN" kubelet \
        --config "$dir/kubelet/config.yaml" --kubeconfig "$dir/kubelet/kubeconfig" \
        --root-dir "$dir/kubelet/root" --cert-dir "$dir/kubelet/pki" \
        --hostname-override "node-$i" --node-ip "$(cl_node_ip "$i"),$(cl_node_ip6 "$i")" \
        --container-runtime-endpoint "unix://$dir/containerd/containerd.sock" \
        >>"$dir/kubelet.log" 2>&1 </dev/null &
      echo $! > "$dir/pids/kubelet" ;;
    freeze) cl_node_pids "$i" | xargs -r kill -STOP 2>/dev/null || true ;;
    thaw) cl_node_pids "$i" | xargs -r kill -CONT 2>/dev/null || true ;;
    cut) cl_nsexec "$ns" ip link set eth0 down ;;
    uncut)
      cl_nsexec "$ns" ip link set eth0 up
      cl_pod_routes "$i" "$(cat "$LAB_DIR/nodes.count")" ;;
    # Silently blackholed: the node's cable stays in (its link is up) but the
    # LAN switch port forwards nothing either way, ARP included.
    blackhole) cl_nsexec "$CL_LAN_NS" ip link set "n$i" nomaster ;;
    unblackhole) cl_nsexec "$CL_LAN_NS" ip link set "n$i" master br0 ;;
    partition|heal)
      local op=-I rule
      [ "$what" = heal ] && op=-D
      # The node's own traffic and its Pods' (forwarded), both ways.
      # (The control plane is reached over IPv4 only.)
      for rule in "INPUT -s $CL_CP_IP" "OUTPUT -d $CL_CP_IP" "FORWARD -s $CL_CP_IP" "FORWARD -d $CL_CP_IP"; do
        # shellcheck disable=SC2086
        cl_nsexec "$ns" iptables $op $rule -j DROP 2>/dev/null || [ "$what" = heal ]
      done ;;
    kill)
      cl_nsexec "$ns" ip link set eth0 down
      cl_node_pids "$i" | xargs -r kill -KILL 2>/dev/null || true ;;
    *) say "unknown fault $what"; exit 2 ;;
  esac
}

# Imports OCI/Docker image archives into every node's containerd (where a
# real cluster would pull from a registry): `tests/lab load-images FILE…`.
# `--tag SRC DST` instead adds tag DST to image SRC on every node.
cl_load_images() {
  local n i sock
  n=$(cat "$LAB_DIR/nodes.count" 2>/dev/null || echo 0)
  [ "$n" -gt 0 ] || { say "load-images: no cluster nodes (tests/lab up --nodes N)"; exit 1; }
  for i in $(seq 1 "$n"); do
    sock=$CL_NODES_DIR/node-$i/containerd/containerd.sock
    if [ "${1:-}" = --tag ]; then
      ctr -a "$sock" -n k8s.io images tag --force "${2:?source}" "${3:?new tag}" >/dev/null
      continue
    fi
    local f
    for f in "$@"; do
      [ -f "$f" ] || { say "load-images: no file $f"; exit 1; }
      ctr -a "$sock" -n k8s.io images import --all-platforms "$f" >/dev/null
    done
  done
}

# Whether anything of a cluster is left on this machine: namespaces, links,
# mounts, cgroups, processes. Prints what it finds; fails if anything.
cl_verify_clean() {
  local left=0 what
  what=$(ip netns list 2>/dev/null | awk '/^lc-/{print $1}')
  [ -z "$what" ] || { say "left behind: network namespaces $what"; left=1; }
  ip link show "$CL_CP_IF" >/dev/null 2>&1 && { say "left behind: link $CL_CP_IF"; left=1; }
  what=$(awk -v d="$CL_NODES_DIR" '$2 ~ "^"d {print $2}' /proc/self/mounts)
  [ -z "$what" ] || { say "left behind: mounts $what"; left=1; }
  what=$(ls -d /sys/fs/cgroup/*/lc-node-* 2>/dev/null || true)
  [ -z "$what" ] || { say "left behind: cgroups $what"; left=1; }
  what=$(pgrep -af "$CL_NODES_DIR" || true)
  [ -z "$what" ] || { say "left behind: processes $what"; left=1; }
  [ "$left" = 0 ] && say "nothing of the cluster is left"
  return "$left"
}
