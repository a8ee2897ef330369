# scripts/lib/demo-net.sh — the demo's network lab, sourced by scripts/demo.
#
# A LAN (bridge br0 in namespace bld-lan) joining three node namespaces, a
# client, a BIRD router and the relay through which speakers reach the
# operator's control socket (the operator runs in the root namespace beside
# the Kubernetes lab on 127.0.0.1). Addresses: 198.18.10.0/24 and
# 2001:db8:10::/64, benchmarking and documentation ranges that exist only
# inside these namespaces: nothing here sends a packet to a real network.
#
# Every process started here has its PID in $DEMO/pids/; net_down stops them
# by PID, then removes the namespaces (killing anything left inside).

NET_PREFIX=bld-
LAN_NS=${NET_PREFIX}lan
ROUTER_IP=198.18.10.1
RELAY_IP=198.18.10.2
CLIENT_IP=198.18.10.100
CLIENT_IP6=2001:db8:10::100
NODES=(node-1 node-2 node-3)

# role → last octet (IPv4 and IPv6 alike) and a MAC that reads back as the role.
host_octet() {
  case "$1" in
    router) echo 1 ;; relay) echo 2 ;; client) echo 100 ;;
    node-*) echo $((10 + ${1#node-})) ;;
    *) echo "demo-net: unknown host $1" >&2; return 1 ;;
  esac
}
host_ns() { echo "${NET_PREFIX}$1"; }
host_ip() { echo "198.18.10.$(host_octet "$1")"; }
host_ip6() { echo "2001:db8:10::$(host_octet "$1")"; }
host_mac() { printf '02:b1:00:00:00:%02x\n' "$(host_octet "$1")"; }
node_of_mac() { # MAC → node name (or the MAC itself)
  local n
  for n in "${NODES[@]}"; do
    [ "$(host_mac "$n")" = "${1,,}" ] && { echo "$n"; return; }
  done
  echo "$1"
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

add_host() { # ROLE
  local role=$1 ns port
  ns=$(host_ns "$role"); port="p-$role"
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

# An HTTP backend on the node's port 8080 and the DNAT a kube-proxy would
# install: the pools' addresses, port 80, to that backend.
start_backend() { # NODE
  start_bg "backend-$1" "$1" "$DEMO/logs/backend-$1.log" \
    python3 -m http.server 8080 --bind :: --directory "$DEMO/www/$1"
}

add_backend() { # NODE
  local node=$1
  mkdir -p "$DEMO/www/$node"
  echo "hello from $node" >"$DEMO/www/$node/index.html"
  start_backend "$node"
  in_ns "$node" nft -f - <<NFT
table ip barelb-demo {
  chain prerouting {
    type nat hook prerouting priority dstnat;
    ip daddr { 198.18.10.200-198.18.10.219, 203.0.113.64/28 } tcp dport 80 dnat to $(host_ip "$node"):8080
  }
}
table ip6 barelb-demo {
  chain prerouting {
    type nat hook prerouting priority dstnat;
    ip6 daddr { 2001:db8:10::200/123, 2001:db8:10::300/123 } tcp dport 80 dnat to [$(host_ip6 "$node")]:8080
  }
}
NFT
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

net_up() {
  net_down
  ip netns add "$LAN_NS"
  ip -n "$LAN_NS" link set lo up
  ip -n "$LAN_NS" link add br0 type bridge mcast_snooping 0
  ip -n "$LAN_NS" link set br0 up
  local h
  for h in router relay client "${NODES[@]}"; do add_host "$h"; done
  for h in "${NODES[@]}"; do add_backend "$h"; done
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
