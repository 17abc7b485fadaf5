#!/usr/bin/env python3
"""Generates the NetworkPolicy benchmark cluster (issue 13) and its competitor ruleset.

Cluster: NODES nodes of PODS_PER_NODE pods (default 100 x 100 = 10,000 pods), node 0
(`pb-node-000`, 10.244.1.0/24) is the agent under test; every other node's pods are remote pods
(spec.nodeName of their node, status.podIPs in its subnet 10.244.<n+1>.0/24). NAMESPACES
namespaces of 100 pods each, labelled team/env; pods labelled app/role, with named container
ports (http 8080, metrics 9090, postgres 5432 on db pods). Node 0 holds 2 pods of each of the
first 50 namespaces.

Policies: POLICIES_PER_NS per namespace (default 10 x 100 = 1,000), the mix of a zero-trust
cluster: default deny ingress and egress, allow within the namespace, allow from the team's
namespaces (namespace selector, named port), frontend -> backend (pod selector, port), backend
-> db (named port), ipBlocks with except, DNS egress to kube-dns, monitoring (namespace AND pod
selector, named port), an app-to-app port range (endPort; 8400-8500, which overlaps no other
allowed port: overlapping ranges for one peer break the sync, see RESULTS.md).

    gen.py cluster OUTDIR            namespaces, the own Node, pods (JSON chunk files, < 8 MiB)
    gen.py policies OUTDIR           the policies (chunk files)
    gen.py pod-change VARIANT        one pod whose role label flips (a|b): changes selection
    gen.py policy-change VARIANT     one policy edit (port 8080 | 8081)
    gen.py nft                       the competitor: the same policies as per-policy chains with
                                     named sets (kube-router's shape, nft syntax), for `nft -f`

IPv4 only (the competitor shape and the changes are the same for IPv6; the pods here carry one
address so both sides hold the same element count).
"""
import json
import os
import sys

NODES = 100
PODS_PER_NODE = 100
NAMESPACES = 100
POLICIES_PER_NS = 10
ROLES = ["frontend", "backend", "db"]
CHUNK = 4000
# PB_NO_RANGES=1: app-range allows the single port 8400 (no endPort), for the experiment in
# RESULTS.md with exact-match (hash) port sets, which cannot hold ranges.
NO_RANGES = os.environ.get("PB_NO_RANGES") == "1"
FREE_NS = "pb-free"
FREE_IPS = ["10.244.1.200", "10.244.1.201"]


def node_name(n):
    return f"pb-node-{n:03d}"


def ns_name(i):
    return f"pb-ns-{i:03d}"


def pod_ip(n, k):
    return f"10.244.{n + 1}.{k + 2}"


def pod_ns(n, k):
    # Even nodes hold namespaces 0-49, odd ones 50-99, 2 pods each: 100 pods a namespace, and
    # node 0 holds pods of 50 namespaces, 2 of each (a frontend and a backend share pb-ns-000).
    return (n % 2) * 50 + k // 2


def pod_labels(n, k):
    j = n * PODS_PER_NODE + k
    # Pods of one (namespace, app, role) are replicas of one Deployment: one pod-template-hash.
    app, role = f"app-{(n + k) % 20:02d}", ROLES[k % 3]
    return {"app": app, "role": role, "pod-template-hash": f"{hash_of(pod_ns(n, k), app, role):010x}"}


def hash_of(*parts):
    h = 0
    for c in repr(parts):
        h = (h * 131 + ord(c)) % (1 << 40)
    return h


def container_id(n):
    return f"{n:064x}"


def pod(n, k, labels=None):
    j = n * PODS_PER_NODE + k
    labels = labels or pod_labels(n, k)
    ports = [{"name": "http", "containerPort": 8080, "protocol": "TCP"},
             {"name": "metrics", "containerPort": 9090, "protocol": "TCP"}]
    if labels["role"] == "db":
        ports.append({"name": "postgres", "containerPort": 5432, "protocol": "TCP"})
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": f"pod-{j:05d}", "namespace": ns_name(pod_ns(n, k)),
                     "uid": f"20000000-0000-4000-8000-{j:012d}", "labels": labels},
        "spec": {"nodeName": node_name(n), "containers": [{"name": "app", "image": "registry.example/app:1", "ports": ports}]},
        "status": {"phase": "Running", "podIP": pod_ip(n, k), "podIPs": [{"ip": pod_ip(n, k)}],
                   "containerStatuses": [{"name": "app", "ready": True, "containerID": "containerd://" + container_id(j + 1)}],
                   "conditions": [{"type": "Ready", "status": "True"}]},
    }


def namespace(i):
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": ns_name(i), "labels": {"team": f"t{i % 10}", "env": "prod" if i % 2 == 0 else "dev"}}}


def cluster():
    yield {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kube-system"}}
    for i in range(NAMESPACES):
        yield namespace(i)
    yield {"apiVersion": "v1", "kind": "Node",
           "metadata": {"name": node_name(0), "labels": {"kubernetes.io/hostname": node_name(0)}},
           "spec": {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24"]},
           "status": {"addresses": [{"type": "InternalIP", "address": "192.168.1.11"}]}}
    for n in range(NODES):
        for k in range(PODS_PER_NODE):
            yield pod(n, k)
    # Two more local pods in a namespace no policy names: the same-run baseline of the
    # first-packet benchmark (forward chain walked, nothing isolated).
    yield {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": FREE_NS}}
    for i, ip in enumerate(FREE_IPS):
        p = pod(0, i)
        p["metadata"].update(name=f"free-{i}", namespace=FREE_NS, uid=f"30000000-0000-4000-8000-{i:012d}")
        p["status"].update(podIP=ip, podIPs=[{"ip": ip}])
        p["status"]["containerStatuses"][0]["containerID"] = "containerd://" + container_id(0xf000 + i)
        yield p


def np(ns, name, selector, types, ingress=None, egress=None):
    spec = {"podSelector": {"matchLabels": selector} if selector else {}, "policyTypes": types}
    if ingress is not None:
        spec["ingress"] = ingress
    if egress is not None:
        spec["egress"] = egress
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": ns_name(ns)}, "spec": spec}


def tcp(port, end=None):
    p = {"protocol": "TCP", "port": port}
    if end:
        p["endPort"] = end
    return p


def policies(i, frontend_port=8080):
    """The POLICIES_PER_NS policies of namespace i."""
    return [
        np(i, "default-deny-ingress", None, ["Ingress"]),
        np(i, "default-deny-egress", None, ["Egress"]),
        np(i, "allow-same-namespace", None, ["Ingress", "Egress"],
           ingress=[{"from": [{"podSelector": {}}]}], egress=[{"to": [{"podSelector": {}}]}]),
        np(i, "allow-from-team", {"role": "backend"}, ["Ingress"],
           ingress=[{"from": [{"namespaceSelector": {"matchLabels": {"team": f"t{i % 10}"}}}], "ports": [tcp("http")]}]),
        np(i, "frontend-to-backend", {"role": "backend"}, ["Ingress"],
           ingress=[{"from": [{"podSelector": {"matchLabels": {"role": "frontend"}}}], "ports": [tcp(frontend_port)]}]),
        np(i, "backend-to-db", {"role": "db"}, ["Ingress"],
           ingress=[{"from": [{"podSelector": {"matchLabels": {"role": "backend"}}}], "ports": [tcp("postgres")]}]),
        np(i, "edge", {"role": "frontend"}, ["Ingress", "Egress"],
           ingress=[{"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.244.0.0/16", "10.96.0.0/12"]}}], "ports": [tcp(443)]}],
           egress=[{"to": [{"ipBlock": {"cidr": "192.168.0.0/16"}}], "ports": [tcp(443)]}]),
        np(i, "allow-dns", None, ["Egress"],
           egress=[{"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
                    "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}]),
        np(i, "allow-monitoring", None, ["Ingress"],
           ingress=[{"from": [{"namespaceSelector": {"matchLabels": {"env": "prod"}}, "podSelector": {"matchLabels": {"app": "app-07"}}}],
                     "ports": [tcp("metrics")]}]),
        np(i, "app-range", {"app": f"app-{i % 20:02d}"}, ["Ingress", "Egress"],
           ingress=[{"from": [{"podSelector": {"matchLabels": {"app": f"app-{(i + 1) % 20:02d}"}}}], "ports": [tcp(8400) if NO_RANGES else tcp(8400, 8500)]}],
           egress=[{"to": [{"ipBlock": {"cidr": "10.96.0.0/12"}}]}]),
    ][:POLICIES_PER_NS]


def all_policies():
    for i in range(NAMESPACES):
        yield from policies(i)


def write_chunks(objects, outdir, stem):
    os.makedirs(outdir, exist_ok=True)
    buf, n = [], 0
    for o in objects:
        buf.append(o)
        if len(buf) == CHUNK:
            json.dump({"apiVersion": "v1", "kind": "List", "items": buf}, open(f"{outdir}/{stem}-{n:03d}.json", "w"))
            buf, n = [], n + 1
    if buf:
        json.dump({"apiVersion": "v1", "kind": "List", "items": buf}, open(f"{outdir}/{stem}-{n:03d}.json", "w"))


# The changes: pod (0, 4) of pb-ns-002 is a backend; variant b makes it a frontend (leaves
# allow-from-team and frontend-to-backend, joins edge); the policy edit moves frontend-to-backend
# of pb-ns-000 (which selects the local backend pod-00001) from port 8080 to 8081 and back.
CHANGE_POD = (0, 4)


def pod_change(variant):
    n, k = CHANGE_POD
    labels = pod_labels(n, k)
    labels["role"] = "backend" if variant == "a" else "frontend"
    return pod(n, k, labels)


def policy_change(variant):
    return policies(0, frontend_port=8080 if variant == "a" else 8081)[4]


# --- the competitor: kube-router's shape in nft syntax ---------------------------------------
# kube-router: per local pod a firewall chain (KUBE-POD-FW-*) jumped to from the forward chain by
# the pod's address; per policy a chain (KUBE-NWPLCY-*) with one rule per (rule, peer, port),
# matching ipsets of the policy's target pods and each peer's pods; an accepted packet is marked,
# an unmarked one dropped at the end of the pod's chain if the pod is isolated. Every change
# rewrites the whole table (iptables-restore of the filter table); here `nft -f` of the table.

def selects(sel, labels):
    return all(labels.get(k) == v for k, v in (sel or {}).items())


def ns_labels(i):
    l = dict(namespace(i)["metadata"]["labels"])
    l["kubernetes.io/metadata.name"] = ns_name(i)
    return l


NAMED = {"http": 8080, "metrics": 9090, "postgres": 5432}


def nft_ruleset(table="pb-reference"):
    pods = []  # (ns index, labels, ip, local)
    for n in range(NODES):
        for k in range(PODS_PER_NODE):
            pods.append((pod_ns(n, k), pod_labels(n, k), pod_ip(n, k), n == 0))
    by_ns = {}
    for p in pods:
        by_ns.setdefault(p[0], []).append(p)
    ns_index = {ns_name(i): i for i in range(NAMESPACES)}
    out = [f"table ip {table} {{"]
    sets, chains = [], []
    # (local pod ip) -> [(policy chain, ingress?, egress?)]
    pod_policies = {}
    for pi, pol in enumerate(all_policies()):
        i = ns_index[pol["metadata"]["namespace"]]
        spec = pol["spec"]
        targets = [p for p in by_ns.get(i, []) if selects(spec["podSelector"].get("matchLabels"), p[1])]
        tset = f"p{pi}-dst"
        sets.append((tset, [p[2] for p in targets], False))
        for p in targets:
            if p[3]:
                pod_policies.setdefault(p[2], []).append((f"nwplcy-{pi}", "Ingress" in spec["policyTypes"], "Egress" in spec["policyTypes"]))
        rules = []
        for direction, key, peerkey in (("ingress", "from", "saddr"), ("egress", "to", "daddr")):
            local = "daddr" if direction == "ingress" else "saddr"
            for ri, rule in enumerate(spec.get(direction, [])):
                ports = []
                for port in rule.get("ports", []):
                    v = NAMED.get(port["port"], port["port"])
                    proto = port.get("protocol", "TCP").lower()
                    ports.append(f"{proto} dport {v}-{port['endPort']}" if "endPort" in port else f"{proto} dport {v}")
                ports = ports or [""]
                peers = rule.get(key, [])
                for qi, peer in enumerate(peers or [None]):
                    if peer is None:
                        match = ""
                    elif "ipBlock" in peer:
                        b = peer["ipBlock"]
                        match = f"ip {peerkey} {b['cidr']}" + "".join(f" ip {peerkey} != {e}" for e in b.get("except", []))
                    else:
                        if "namespaceSelector" in peer:
                            nss = [j for j in range(NAMESPACES) if selects(peer["namespaceSelector"].get("matchLabels"), ns_labels(j))]
                        else:
                            nss = [i]
                        psel = (peer.get("podSelector") or {}).get("matchLabels")
                        ips = [p[2] for j in nss for p in by_ns.get(j, []) if selects(psel, p[1])]
                        sname = f"p{pi}-{direction[0]}{ri}-{qi}"
                        sets.append((sname, ips, False))
                        match = f"ip {peerkey} @{sname}"
                    for pm in ports:
                        rules.append(f"ip {local} @{tset} {match} {pm} meta mark set meta mark | 0x10000 return")
        chains.append((f"nwplcy-{pi}", rules))
    for name, ips, _ in sets:
        out.append(f"  set {name} {{ type ipv4_addr; flags interval;" + (f" elements = {{ {', '.join(ips)} }}" if ips else "") + " }")
    for name, rules in chains:
        out.append(f"  chain {name} {{")
        out += [f"    {r}" for r in rules]
        out.append("  }")
    fwd = ["    type filter hook forward priority 0; policy accept;", "    ct state established,related accept"]
    for ip, pols in sorted(pod_policies.items()):
        c = f"pod-fw-{ip.replace('.', '-')}"
        body = []
        for direction, idx, field in (("ingress", 1, "daddr"), ("egress", 2, "saddr")):
            ps = [p for p in pols if p[idx]]
            if not ps:
                continue
            body.append(f"  chain {c}-{direction} {{")
            body += [f"    jump {p[0]}" for p in ps]
            body.append("    meta mark & 0x10000 == 0x10000 meta mark set meta mark & 0xfffeffff return")
            body.append("    counter drop")
            body.append("  }")
            fwd.append(f"    ip {field} {ip} jump {c}-{direction}")
        out += body
    out.append("  chain forward {")
    out += fwd
    out.append("  }")
    out.append("}")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "cluster":
        write_chunks(cluster(), sys.argv[2], "cluster")
    elif cmd == "policies":
        write_chunks(all_policies(), sys.argv[2], "policies")
    elif cmd == "pod-change":
        json.dump(pod_change(sys.argv[2]), sys.stdout)
    elif cmd == "policy-change":
        json.dump(policy_change(sys.argv[2]), sys.stdout)
    elif cmd == "nft":
        sys.stdout.write(nft_ruleset(*(sys.argv[2:3])))
    else:
        sys.exit(__doc__)
