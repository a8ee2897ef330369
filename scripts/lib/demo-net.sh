# scripts/lib/demo-net.sh — the demo's network, sourced by scripts/demo.
#
# The demo runs on the lab cluster (tests/lab up --nodes 3): nodes node-1…3
# are network namespaces lc-node-1…3 on the cluster LAN (bridge br0 in
# namespace lc-lan), each with its kubelet, containerd, CNI and kube-proxy;
# the control plane is 198.19.0.1 on that LAN. The demo adds a client and a
# BIRD router to the same LAN. Addresses: 198.19.0.0/24 and
# 2001:db8:19::/64, benchmarking and documentation ranges that exist only
# inside these namespaces: nothing here sends a packet to a real network.
#
# Every process started here has its PID in $DEMO/pids/; net_down stops them
# by PID, then removes the demo's own namespaces (the cluster's go with
# `tests/lab down`).

NET_PREFIX=bld-
LAN_NS=lc-lan
CP_IP=198.19.0.1
ROUTER_IP=198.19.0.2
CLIENT_IP=198.19.0.100
CLIENT_IP6=2001:db8:19::100
NODES=(node-1 node-2 node-3)

# role → last octet (IPv4 and IPv6 alike) and a MAC that reads back as the role
# (the cluster gives node-I the MAC 02:b1:00:00:00:<10+I>).
host_octet() {
  case "$1" in
    router) echo 2 ;; client) echo 100 ;;
    node-*) echo $((10 + ${1#node-})) ;;
    *) echo "demo-net: unknown host $1" >&2; return 1 ;;
  esac
}
host_ns() {
  case "$1" in
    node-*) echo "lc-$1" ;;
    *) echo "${NET_PREFIX}$1" ;;
  esac
}
host_ip() { echo "198.19.0.$(host_octet "$1")"; }
host_ip6() { echo "2001:db8:19::$(host_octet "$1")"; }
host_mac() { printf '02:b1:00:00:00:%02x\n' "$(host_octet "$1")"; }
node_of_mac() { # MAC → node name (or the MAC itself)
  local n
  for n in "${NODES[@]}"; do
    [ "$(host_mac "$n")" = "${1,,}" ] && { echo "$n"; return; }
  done
  echo "$1"
}
# The LAN-side port of a host's cable.
host_port() {
  case "$1" in
    node-*) echo "n${1#node-}" ;;
    *) echo "p-$1" ;;
  esac
}

in_ns() { local ns; ns=$(host_ns "$1"); shift; ip netns exec "$ns" "$@"; }

# start_bg NAME ROLE|root LOG CMD… — starts CMD in ROLE's namespace (or the
# root one), records its PID as NAME.
start_bg() {
  local name=$1 role=$2 log=$3; shift 3
  if [ "$role" = root ]; then
    "$@" >>"$log" 2>&1 </dev/null &
  else
    # `ip netns exec` execs CMD, so $! is CMD's own PID.
    ip netns exec "$(host_ns "$role")" "$@" >>"$log" 2>&1 </dev/null &
  fi
  echo $! >"$DEMO/pids/$name.pid"
  disown # stopped by PID, not as a job of this shell (and killed without a notice)
}

stop_bg() { # NAME [SIGNAL]
  local f=$DEMO/pids/$1.pid pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill "-${2:-TERM}" "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

add_host() { # ROLE — a namespace of the demo's own on the cluster LAN
  local role=$1 ns port
  ns=$(host_ns "$role"); port=$(host_port "$role")
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
  ip -n "$LAN_NS" link add "$port" type veth peer name eth0 netns "$ns"
  ip -n "$LAN_NS" link set "$port" master br0 up
  ip -n "$ns" link set eth0 address "$(host_mac "$role")"
  ip -n "$ns" link set eth0 up
  ip -n "$ns" addr add "$(host_ip "$role")/24" dev eth0
  ip -n "$ns" addr add "$(host_ip6 "$role")/64" dev eth0 nodad
}

# BIRD on the router: eBGP with every node (AS 64500), routes into the
# router's kernel table with ECMP, so the client reaches BGP addresses
# through it.
start_router() {
  local conf=$DEMO/bird.conf n
  {
    echo "router id $ROUTER_IP;"
    echo "log \"$DEMO/logs/bird.log\" all;"
    echo "protocol device {}"
    echo "protocol kernel { ipv4 { export where source = RTS_BGP; }; merge paths on; }"
    for n in "${NODES[@]}"; do
      cat <<BIRD
protocol bgp ${n//-/_} {
  local $ROUTER_IP as 64501;
  neighbor $(host_ip "$n") as 64500;
  hold time 9; keepalive time 3; connect retry time 1; error wait time 1, 5;
  ipv4 { import where net.len = 32; export none; };
}
BIRD
    done
  } >"$conf"
  in_ns router sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.send_redirects=0 net.ipv4.conf.eth0.send_redirects=0
  start_bg bird router "$DEMO/logs/bird.stdout" bird -f -c "$conf" -s "$DEMO/bird.ctl" -P "$DEMO/bird.pid"
  ip -n "$(host_ns client)" route add 203.0.113.64/28 via "$ROUTER_IP"
}

birdc_demo() { birdc -s "$DEMO/bird.ctl" "$@"; }

# Cable pulled and plugged back, at the LAN side (the node loses carrier).
cable() { ip -n "$LAN_NS" link set "$(host_port "$1")" "$2"; }

net_up() {
  net_down
  local h
  for h in router client; do add_host "$h"; done
  start_router
}

net_down() {
  local f ns pid
  for f in "$DEMO"/pids/*.pid; do
    [ -e "$f" ] || continue
    stop_bg "$(basename "$f" .pid)"
  done
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$NET_PREFIX" || true); do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
  done
}
