#!/bin/bash
# Reference for vxlan convergence: the same three entries per peer that nodenet installs
# (permanent neighbour subnet.0 -> VTEP MAC, FDB VTEP MAC -> peer address, onlink route via
# subnet.0), written with `bridge -batch` (FDB) and `ip -batch` (neighbour + route) into a
# vxlan device in a throwaway namespace. Prints: vxlan-reference peers=N batch_s=X
set -euo pipefail
N=${1:-5000}
NS=vxref$$; T=$(mktemp -d)
trap 'ip netns del $NS 2>/dev/null || true; rm -rf $T' EXIT
ip netns add $NS
ip -n $NS link add eth0 type veth peer name eth0p
ip -n $NS addr add 192.168.0.2/16 dev eth0; ip -n $NS link set eth0 up; ip -n $NS link set eth0p up
ip -n $NS link add vx0 type vxlan id 1 dstport 8472 local 192.168.0.2 dev eth0 nolearning
ip -n $NS link set vx0 up
python3 - "$N" "$T" <<'PY'
import sys
n, t = int(sys.argv[1]), sys.argv[2]
with open(f"{t}/fdb", "w") as fdb, open(f"{t}/ip", "w") as ip:
    for i in range(n):
        a, b = 1 + i // 250, 1 + i % 250
        mac = f"0e:6e:c0:a8:{a:02x}:{b:02x}"
        sub = f"10.{100 + i // 256}.{i % 256}"
        fdb.write(f"fdb replace {mac} dev vx0 dst 192.168.{a}.{b} self permanent\n")
        ip.write(f"neigh replace {sub}.0 lladdr {mac} dev vx0 nud permanent\n")
        ip.write(f"route replace {sub}.0/24 via {sub}.0 dev vx0 onlink proto 200\n")
PY
/usr/bin/time -f "%e" -o $T/time sh -c "bridge -n $NS -batch $T/fdb && ip -n $NS -batch $T/ip"
got=$(ip -n $NS route show proto 200 | wc -l); [ "$got" = "$N" ] || { echo "only $got routes installed" >&2; exit 1; }
echo "vxlan-reference peers=$N batch_s=$(cat $T/time)"
