#!/usr/bin/env bash
# The nodenet demo: a local cluster of three nodes, each a network namespace on a shared
# "fabric" bridge, each running `nodenet agent` on the embedded store, with the same
# manifest (Nodes, a namespace, a service and its pods) applied on every node.
# Everything lives in namespaces this script creates and deletes; nothing touches the
# machine's own network. Run as root. `--keep` leaves the cluster running for exploring.
set -euo pipefail
cd "$(dirname "$0")/.."
keep=0
[ "${1:-}" = "--keep" ] && keep=1

scripts/setup.sh
bin=$(swift build --show-bin-path)/nodenet
cni=$(swift build --show-bin-path)/nodenet-cni   # the plugin executable (/opt/cni/bin/nodenet on a node)

P=nndemo                      # namespace prefix: fabric, node1..3
T=$(mktemp -d /tmp/nodenet-demo.XXXX)
nodes=(node1 node2 node3)

cleanup() {
  for n in "${nodes[@]}"; do
    [ -f "$T/$n.pid" ] && kill "$(cat "$T/$n.pid")" 2>/dev/null || true
  done
  sleep 0.5
  rm -rf /etc/netns/$P-*
  for ns in $(ip netns list | awk '{print $1}' | grep "^$P-" || true); do
    ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
  done
  rm -rf "$T"
}
cleanup
T=$(mktemp -d /tmp/nodenet-demo.XXXX)
if [ $keep = 0 ]; then trap cleanup EXIT; fi

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
nn() { local n=$1; shift; "$bin" "$@" --socket "$T/$n/run/nodenet.sock"; }

say "fabric: a bridge that plays the nodes' L2 network (192.168.1.0/24)"
ip netns add $P-fabric
ip -n $P-fabric link add br0 type bridge
ip -n $P-fabric link set br0 up
ip -n $P-fabric addr add 192.168.1.1/24 dev br0     # a "fabric host" for NodePort traffic
ip -n $P-fabric link set lo up
i=11
for n in "${nodes[@]}"; do
  ip netns add $P-$n
  ip -n $P-$n link set lo up
  ip link add "$P-$n" netns $P-fabric type veth peer name eth0 netns $P-$n
  ip -n $P-fabric link set "$P-$n" master br0 up
  ip -n $P-$n addr add 192.168.1.$i/24 dev eth0
  ip -n $P-$n link set eth0 up
  echo "  $n: eth0 192.168.1.$i, pods 10.244.$((i-10)).0/24"
  i=$((i+1))
done

say "a stub upstream DNS server on the fabric (never the machine's own resolver)"
nsenter --net=/var/run/netns/$P-fabric dnsmasq --no-daemon --no-resolv --no-hosts --bind-interfaces --listen-address=192.168.1.1 \
  --port=53 --address=/example.test/192.0.2.10 --pid-file=$T/dnsmasq.pid > "$T/dnsmasq.log" 2>&1 &
echo "  dnsmasq on 192.168.1.1:53 answers *.example.test"

say "start one agent per node (embedded store, state in $T/<node>)"
i=11
for n in "${nodes[@]}"; do
  mkdir -p "$T/$n"
  nsenter --net=/var/run/netns/$P-$n "$bin" agent --node-name $n --node-ip 192.168.1.$i \
    --state-dir "$T/$n/state" --run-dir "$T/$n/run" --dns-upstreams 192.168.1.1:53 > "$T/$n/agent.log" 2>&1 &
  echo $! > "$T/$n.pid"
  i=$((i+1))
done
for n in "${nodes[@]}"; do
  for _ in $(seq 100); do grep -q '"ready" : true' <<<"$(nn $n status --json 2>/dev/null)" && break; sleep 0.1; done
done

cat > "$T/cluster.yaml" <<'YAML'
# The static cluster: the same manifest on every node makes the other nodes its peers.
apiVersion: v1
kind: Node
metadata: {name: node1}
spec: {podCIDRs: [10.244.1.0/24]}
status: {addresses: [{type: InternalIP, address: 192.168.1.11}]}
---
apiVersion: v1
kind: Node
metadata: {name: node2}
spec: {podCIDRs: [10.244.2.0/24]}
status: {addresses: [{type: InternalIP, address: 192.168.1.12}]}
---
apiVersion: v1
kind: Node
metadata: {name: node3}
spec: {podCIDRs: [10.244.3.0/24]}
status: {addresses: [{type: InternalIP, address: 192.168.1.13}]}
---
apiVersion: v1
kind: Namespace
metadata: {name: apps}
---
apiVersion: v1
kind: Service
metadata: {name: web-service, namespace: apps}
spec:
  type: NodePort
  clusterIP: 10.107.37.188
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080, nodePort: 30080}]
---
apiVersion: v1
kind: Pod
metadata: {name: web-1, namespace: apps, labels: {app: web}}
spec: {nodeName: node2, hostname: web-1, containers: [{name: web, image: busybox, ports: [{containerPort: 8080}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: web-2, namespace: apps, labels: {app: web}}
spec: {nodeName: node3, hostname: web-2, containers: [{name: web, image: busybox, ports: [{containerPort: 8080}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: apps, labels: {app: client}}
spec: {nodeName: node1, containers: [{name: client, image: busybox}]}
YAML

say "apply the same manifest on every node"
for n in "${nodes[@]}"; do
  echo "--- $n"
  nn $n apply -f "$T/cluster.yaml"
done

# A pod is a network namespace attached through the CNI path: the runtime's job, done here by
# executing the plugin (nodenet-cni) from the node's namespace, as containerd would.
cni_add() {  # node pod
  local node=$1 pod=$2
  ip netns add $P-$pod
  echo "{\"cniVersion\":\"1.1.0\",\"name\":\"nodenet\",\"type\":\"nodenet\",\"socket\":\"$T/$node/run/nodenet.sock\"}" > "$T/$pod.conf"
  nsenter --net=/var/run/netns/$P-$node env CNI_COMMAND=ADD CNI_CONTAINERID=$pod-0001 CNI_NETNS=/var/run/netns/$P-$pod \
    CNI_IFNAME=eth0 CNI_PATH=/opt/cni/bin CNI_ARGS="K8S_POD_NAMESPACE=apps;K8S_POD_NAME=$pod" "$cni" < "$T/$pod.conf" > "$T/$pod.result"
  ip=$(grep -o '"address":"[0-9.]*' "$T/$pod.result" | cut -d'"' -f4)
  # The runtime writes the pod's resolv.conf from the result's dns block; `ip netns exec`
  # shows /etc/netns/<ns>/resolv.conf to programs in the namespace.
  mkdir -p /etc/netns/$P-$pod
  { echo "search $(grep -o '"search":\[[^]]*' "$T/$pod.result" | cut -d'[' -f2 | tr -d '"' | tr ',' ' ')"
    echo "nameserver $(grep -o '"nameservers":\["[^"]*' "$T/$pod.result" | cut -d'"' -f4)"
    echo "options ndots:5"; } > /etc/netns/$P-$pod/resolv.conf
  eval "ip_${pod//-/_}=$ip"
  echo "  $pod on $node: $ip"
}

say "pods through the CNI plugin (what a runtime would do)"
cni_add node2 web-1
cni_add node3 web-2
cni_add node1 client
# The embedded source has no control plane: each node knows the addresses of its own pods.
# Publishing the others is what a control plane does; here the same manifest goes to every node.
for pod in web-1 web-2 client; do
  eval "ip=\$ip_${pod//-/_}"
  printf 'apiVersion: v1\nkind: Pod\nmetadata: {name: %s, namespace: apps, labels: {app: %s}}\nspec: {containers: [{name: %s, image: busybox}]}\nstatus: {podIPs: [{ip: %s}]}\n' \
    "$pod" "$( [ $pod = client ] && echo client || echo web)" "$pod" "$ip" > "$T/$pod-ip.yaml"
  for n in "${nodes[@]}"; do nn $n apply -f "$T/$pod-ip.yaml" > /dev/null; done
done
for pod in web-1 web-2; do
  mkdir -p "$T/www-$pod"; echo "hello from $pod" > "$T/www-$pod/index.html"
  ip netns exec $P-$pod busybox httpd -p 8080 -h "$T/www-$pod"
done

ok=0; fail=0
check() {  # description command...
  local what=$1; shift
  if out=$("$@" 2>&1) && [ -n "$out" ]; then echo "  ok    $what: $(echo "$out" | tail -1)"; ok=$((ok+1)); else echo "  FAIL  $what: $(echo "$out" | tail -1)"; fail=$((fail+1)); fi
}

say "cross-node pod traffic, no NAT (routes: host-gw)"
check "client (node1) -> web-1 (node2) ping" ip netns exec $P-client ping -c1 -W2 "$ip_web_1"
check "client (node1) -> web-2 (node3) http" ip netns exec $P-client curl -s -m 3 "http://$ip_web_2:8080/"

say "the service: ClusterIP and NodePort (nftables rules programmed by each agent)"
for i in 1 2 3 4; do
  check "client -> web-service ClusterIP 10.107.37.188:80" ip netns exec $P-client curl -s -m 3 http://10.107.37.188/
done
check "fabric host -> NodePort 192.168.1.11:30080" ip netns exec $P-fabric curl -s -m 3 http://192.168.1.11:30080/

say "cluster DNS on every node (169.254.20.10), from the same store"
check "client: web-service.apps.svc.cluster.local" ip netns exec $P-client dig +short +time=2 web-service.apps.svc.cluster.local
check "client: plain 'web-service' through the search path" ip netns exec $P-client dig +short +search +time=2 web-service
pod_name="${ip_web_1//./-}.apps.pod.cluster.local"
check "client: pod record $pod_name" ip netns exec $P-client dig +short +time=2 "$pod_name"
check "client: www.example.test forwarded to the stub upstream" ip netns exec $P-client dig +short +time=2 www.example.test
echo "  client's resolv.conf (from the CNI result):"; sed 's/^/    /' /etc/netns/$P-client/resolv.conf

say "status of node1"
nn node1 status

echo
echo "demo checks: $ok passed, $fail failed"
if [ $keep = 1 ]; then
  say "cluster left running: state in $T; stop with: $0 (it cleans up first)"
else
  say "done: tearing down"
fi
[ $fail = 0 ]
