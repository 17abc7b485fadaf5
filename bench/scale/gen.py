#!/usr/bin/env python3
"""Generates a cluster for the scale harness as Kubernetes manifests.

Shape (issue 16): NODES nodes with one /24 pod subnet each, PODS pods spread evenly over them
(status.podIPs, spec.nodeName, Ready), SERVICES ClusterIP services without a selector, each
with one EndpointSlice of ENDPOINTS/SERVICES ready endpoints (pod addresses on other nodes),
spread over NAMESPACES namespaces. `full` is 5,000 / 150,000 / 10,000 / 50,000; `tenth` is 10x
smaller; `ci` is what the test suite applies (500 nodes, 1,500 pods, 200 services).

The agent under test is node 0 (`scale-node-00000`): its peers are every other node, on-link on
172.16.0.0/12 (the harness puts 172.16.0.1/12 on the node namespace's uplink).

Writes chunk files of at most CHUNK objects each (`kind: List`), JSON or YAML, because the
control API refuses request bodies over 8 MiB. Order: namespaces, nodes, services, slices, pods.

    gen.py SIZE OUTDIR [--format json|yaml] [--chunk N]
    gen.py expect SIZE          the desired kernel state, as JSON (for checks)
"""
import json
import os
import re
import sys

SIZES = {
    "full": dict(nodes=5000, pods=150000, services=10000, endpoints=50000, namespaces=100),
    "tenth": dict(nodes=500, pods=15000, services=1000, endpoints=5000, namespaces=20),
    "ci": dict(nodes=500, pods=1500, services=200, endpoints=1000, namespaces=10),
}


def node_name(i):
    return f"scale-node-{i:05d}"


def node_cidr(i):
    # 10.128.0.0/9 holds 32,768 /24 subnets.
    return f"10.{128 + i // 256}.{i % 256}.0/24"


def node_ip(i):
    # 172.16.0.1 is node 0; 250 addresses per /24 so no .0 or .255.
    return f"172.{16 + i // 62500}.{(i // 250) % 250}.{i % 250 + 1}"


def pod_ip(node, k):
    return f"10.{128 + node // 256}.{node % 256}.{k + 2}"


def cluster_ip(s):
    # 10.96.0.0/12: skip 10.96.0.0/24 (10.96.0.10 is the DNS address).
    return f"10.{96 + (s + 256) // 65536}.{((s + 256) // 256) % 256}.{(s + 256) % 256}"


def container_id(n):
    return f"{n:064x}"


class Cluster:
    def __init__(self, size):
        self.p = SIZES[size]
        p = self.p
        self.pods_per_node = max(1, p["pods"] // p["nodes"])
        self.eps_per_service = max(1, p["endpoints"] // p["services"])

    def ns(self, i):
        return f"scale-ns-{i % self.p['namespaces']:03d}"

    def pod_location(self, j):
        """Pod j's node and index on it."""
        return j % self.p["nodes"], j // self.p["nodes"]

    def namespaces(self):
        for i in range(self.p["namespaces"]):
            yield {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": self.ns(i)}}

    def node(self, i):
        return {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": node_name(i), "uid": f"00000000-0000-4000-8000-{i:012d}",
                         "labels": {"kubernetes.io/hostname": node_name(i), "topology.kubernetes.io/zone": f"zone-{i % 3}"}},
            "spec": {"podCIDR": node_cidr(i), "podCIDRs": [node_cidr(i)]},
            "status": {"addresses": [{"type": "InternalIP", "address": node_ip(i)},
                                     {"type": "Hostname", "address": node_name(i)}]},
        }

    def nodes(self):
        for i in range(self.p["nodes"]):
            yield self.node(i)

    def service(self, s):
        return {
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": f"svc-{s:05d}", "namespace": self.ns(s), "uid": f"10000000-0000-4000-8000-{s:012d}",
                         "labels": {"app": f"app-{s:05d}"}},
            "spec": {"type": "ClusterIP", "clusterIP": cluster_ip(s), "clusterIPs": [cluster_ip(s)],
                     "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
                     "ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080}]},
        }

    def services(self):
        for s in range(self.p["services"]):
            yield self.service(s)

    def endpoint_pod(self, s, e):
        """The pod behind endpoint e of service s: spread over nodes, never the same pod twice."""
        return (s * self.eps_per_service + e) % self.p["pods"]

    def slice(self, s, shift=0):
        eps = []
        for e in range(self.eps_per_service):
            j = (self.endpoint_pod(s, e) + shift) % self.p["pods"]
            node, k = self.pod_location(j)
            eps.append({"addresses": [pod_ip(node, k)], "conditions": {"ready": True, "serving": True, "terminating": False},
                        "nodeName": node_name(node),
                        "targetRef": {"kind": "Pod", "namespace": self.ns(j), "name": f"pod-{j:06d}"}})
        return {
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"svc-{s:05d}-abcde", "namespace": self.ns(s),
                         "labels": {"kubernetes.io/service-name": f"svc-{s:05d}",
                                    "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}},
            "addressType": "IPv4",
            "endpoints": eps,
            "ports": [{"name": "http", "protocol": "TCP", "port": 8080}],
        }

    def slices(self):
        for s in range(self.p["services"]):
            yield self.slice(s)

    def pod(self, j):
        node, k = self.pod_location(j)
        return {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"pod-{j:06d}", "namespace": self.ns(j), "uid": f"20000000-0000-4000-8000-{j:012d}",
                         "labels": {"app": f"app-{j % max(1, self.p['services']):05d}", "pod-template-hash": "5d8f7c9b6"}},
            "spec": {"nodeName": node_name(node),
                     "containers": [{"name": "main", "image": "registry.example/app:1.0",
                                     "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]}]},
            "status": {"phase": "Running", "podIP": pod_ip(node, k), "podIPs": [{"ip": pod_ip(node, k)}],
                       "conditions": [{"type": "Ready", "status": "True"}]},
        }

    def pods(self):
        for j in range(self.p["pods"]):
            yield self.pod(j)

    def all(self):
        yield from self.namespaces()
        yield from self.nodes()
        yield from self.services()
        yield from self.slices()
        yield from self.pods()

    def expect(self):
        """What the kernel of node 0 must hold: a route per peer subnet, and every service's
        cluster IP and every endpoint address somewhere in table ip nodenet."""
        eps = set()
        for s in range(self.p["services"]):
            for e in self.slice(s)["endpoints"]:
                eps.update(e["addresses"])
        return {
            "routes": {node_cidr(i): node_ip(i) for i in range(1, self.p["nodes"])},
            "clusterIPs": [cluster_ip(s) for s in range(self.p["services"])],
            "endpoints": sorted(eps),
            "objects": self.p["nodes"] + self.p["pods"] + 2 * self.p["services"] + self.p["namespaces"],
        }


def yaml_scalar(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    # Plain scalars where kubectl writes them plain (names, addresses, CIDRs), quoted where a
    # plain one would be read as another type or is not plain-safe.
    if re.fullmatch(r"[A-Za-z][A-Za-z0-9./_-]*", v) and v.lower() not in ("true", "false", "yes", "no", "on", "off", "null", "y", "n"):
        return v
    if re.fullmatch(r"[0-9a-f:.]+(/[0-9]+)?", v) and v.count(".") + v.count(":") >= 2:
        return v
    return json.dumps(v)  # a JSON string is a valid YAML double-quoted scalar


def to_yaml(o, indent=0):
    """Block-style YAML, as kubectl writes it (the YAML path's real input, not JSON in disguise)."""
    pad = "  " * indent
    lines = []
    if isinstance(o, dict):
        for k, v in o.items():
            if isinstance(v, (dict, list)) and v:
                lines.append(f"{pad}{k}:")
                lines.append(to_yaml(v, indent + 1))
            else:
                lines.append(f"{pad}{k}: {yaml_scalar(v) if not isinstance(v, (dict, list)) else ('{}' if isinstance(v, dict) else '[]')}")
    else:
        for v in o:
            if isinstance(v, dict) and v:
                inner = to_yaml(v, indent + 1).split("\n")
                inner[0] = pad + "- " + inner[0].lstrip()
                lines.append("\n".join(inner))
            else:
                lines.append(f"{pad}- {yaml_scalar(v)}")
    return "\n".join(lines)


def write_chunks(cluster, outdir, fmt, chunk):
    os.makedirs(outdir, exist_ok=True)
    for f in os.listdir(outdir):
        if f.startswith("chunk-"):
            os.remove(os.path.join(outdir, f))
    buf, n, files = [], 0, 0

    def flush():
        nonlocal buf, files
        if not buf:
            return
        path = os.path.join(outdir, f"chunk-{files:04d}.{fmt}")
        with open(path, "w") as f:
            if fmt == "json":
                json.dump({"apiVersion": "v1", "kind": "List", "items": buf}, f, separators=(",", ":"))
            else:
                f.write("\n---\n".join(to_yaml(o) for o in buf) + "\n")
        files += 1
        buf = []

    for o in cluster.all():
        buf.append(o)
        n += 1
        if len(buf) >= chunk:
            flush()
    flush()
    return n, files


def main(argv):
    if len(argv) >= 2 and argv[0] == "expect":
        json.dump(Cluster(argv[1]).expect(), sys.stdout)
        return 0
    if len(argv) < 2 or argv[0] not in SIZES:
        print(__doc__, file=sys.stderr)
        return 2
    size, outdir = argv[0], argv[1]
    fmt = "json"
    chunk = 5000
    rest = argv[2:]
    while rest:
        if rest[0] == "--format":
            fmt = rest[1]
            rest = rest[2:]
        elif rest[0] == "--chunk":
            chunk = int(rest[1])
            rest = rest[2:]
        else:
            print(f"unknown argument {rest[0]}", file=sys.stderr)
            return 2
    if fmt not in ("json", "yaml"):
        print("--format is json or yaml", file=sys.stderr)
        return 2
    n, files = write_chunks(Cluster(size), outdir, fmt, chunk)
    print(f"objects={n} files={files} format={fmt} dir={outdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
