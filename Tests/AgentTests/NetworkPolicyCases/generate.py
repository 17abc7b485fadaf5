#!/usr/bin/env python3
"""Writes netpol-cases.yaml: NetworkPolicy conformance cases on the upstream model, each with
the matrices a correct implementation produces, computed here by a small evaluator of the
NetworkPolicy spec (k/k staging/src/k8s.io/api/networking/v1/types.go semantics with the
defaults of pkg/apis/networking/v1/defaults.go).

Why a generator: the matrices are 9x9 per port/protocol and hand-typing them is where errors
come from; the evaluator is a few lines per rule of the spec, independent of nodenet's
enforcement (which is what the matrices check). Run it after editing a case:
    python3 Tests/AgentTests/NetworkPolicyCases/generate.py > Tests/AgentTests/NetworkPolicyCases/netpol-cases.yaml

The shared reference names a 40-case file (network-policy.md section 4) that was not present
on this machine when this was written; these cases follow the upstream tests it lists.
"""
import ipaddress
import sys
import yaml

NAMESPACES = ["x", "y", "z"]
PODS = ["a", "b", "c"]
ALL = [f"{n}/{p}" for n in NAMESPACES for p in PODS]
# Symbolic pod addresses for ipBlock evaluation: pod addresses are only known at run time, the
# file says {{ip x/b}}. Each pod in its own node subnet of 10.244.0.0/16, as in the cluster.
IPS = {pod: f"10.244.{(NAMESPACES.index(pod[0]) + PODS.index(pod[2])) % 3 + 1}.{10 + i}" for i, pod in enumerate(ALL)}


def default_pod_labels(pod):
    return {"pod": pod.split("/")[1]}


def default_ns_labels(ns):
    return {"ns": ns, "kubernetes.io/metadata.name": ns}


def selects(selector, labels):
    if selector is None:
        return False
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions") or []:
        k, op, vals = e["key"], e["operator"], e.get("values") or []
        if op == "In" and labels.get(k) not in vals:
            return False
        if op == "NotIn" and k in labels and labels[k] in vals:
            return False
        if op == "Exists" and k not in labels:
            return False
        if op == "DoesNotExist" and k in labels:
            return False
    return True


def policy_types(spec):
    if spec.get("policyTypes"):
        return spec["policyTypes"]
    return ["Ingress"] + (["Egress"] if spec.get("egress") else [])


def sub_ip(text):
    for pod, ip in IPS.items():
        text = text.replace("{{ip %s}}" % pod, ip)
    return text


def peer_matches(peer, policy_ns, other, state):
    if "ipBlock" in peer:
        ip = ipaddress.ip_address(IPS[other])
        b = peer["ipBlock"]
        if ip not in ipaddress.ip_network(sub_ip(b["cidr"])):
            return False
        return not any(ip in ipaddress.ip_network(sub_ip(e)) for e in b.get("except") or [])
    ns = other.split("/")[0]
    if "namespaceSelector" in peer:
        if not selects(peer["namespaceSelector"], state["ns"][ns]):
            return False
    elif ns != policy_ns:
        return False
    if "podSelector" in peer:
        return selects(peer["podSelector"], state["pods"][other])
    return True


def port_matches(ports, dst, port, proto):
    if not ports:
        return True
    for p in ports:
        if p.get("protocol", "TCP") != proto:
            continue
        if "port" not in p:
            return True
        want = p["port"]
        if isinstance(want, str):
            # A named port resolves on the destination pod: serve-<port>-<proto>.
            if want == f"serve-{port}-{proto.lower()}":
                return True
            continue
        if want <= port <= p.get("endPort", want):
            return True
    return False


def cnp_selects(sel, pod, state):
    """A ClusterNetworkPolicy subject or peer (exactly one of namespaces, pods, networks)."""
    ns = pod.split("/")[0]
    if "namespaces" in sel:
        return selects(sel["namespaces"], state["ns"][ns])
    if "pods" in sel:
        return selects(sel["pods"].get("namespaceSelector") or {}, state["ns"][ns]) and \
            selects(sel["pods"]["podSelector"], state["pods"][pod])
    if "networks" in sel:
        ip = ipaddress.ip_address(IPS[pod])
        return any(ip in ipaddress.ip_network(sub_ip(n)) for n in sel["networks"])
    return False


def cnp_protocols_match(protocols, port, proto):
    if not protocols:
        return True
    for p in protocols:
        if "destinationNamedPort" in p:
            # Resolved on the destination pod: serve-<port>-<proto>.
            if p["destinationNamedPort"] == f"serve-{port}-{proto.lower()}":
                return True
            continue
        spec = p.get(proto.lower())
        if spec is None:
            continue
        dp = spec.get("destinationPort")
        if dp is None or dp.get("number") == port or ("range" in dp and dp["range"]["start"] <= port <= dp["range"]["end"]):
            return True
    return False


def tier_action(tier, direction, subject, other, port, proto, state):
    """The action of the first rule of `tier` (priority, then name; rules in order) that
    applies to `subject` and matches the traffic with `other`; None when none does."""
    key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    cnps = sorted((c for c in state["cnps"].values() if c["spec"]["tier"] == tier),
                  key=lambda c: (c["spec"]["priority"], c["metadata"]["name"]))
    for c in cnps:
        if not cnp_selects(c["spec"]["subject"], subject, state):
            continue
        for rule in c["spec"].get(key) or []:
            peers = rule.get(peers_key) or []
            known = [pe for pe in peers if set(pe) & {"namespaces", "pods", "networks"}]
            # Fail closed: an unknown peer makes Deny and Pass match everything.
            if len(known) < len(peers) and rule["action"] != "Accept":
                return rule["action"]
            if any(cnp_selects(pe, other, state) for pe in known) and cnp_protocols_match(rule.get("protocols"), port, proto):
                return rule["action"]
    return None


def allowed_one_way(direction, subject, other, dst, port, proto, state):
    """Whether the tiers and `subject`'s policies let traffic with `other` through in
    `direction`: Admin tier, then NetworkPolicy if it isolates, else Baseline tier."""
    admin = tier_action("Admin", direction, subject, other, port, proto, state)
    if admin in ("Accept", "Deny"):
        return admin == "Accept"
    if is_isolated(direction, subject, state):
        return allowed_by_network_policy(direction, subject, other, dst, port, proto, state)
    return tier_action("Baseline", direction, subject, other, port, proto, state) != "Deny"


def is_isolated(direction, subject, state):
    ns = subject.split("/")[0]
    return any(p["metadata"]["namespace"] == ns and selects(p["spec"]["podSelector"], state["pods"][subject])
               and direction in policy_types(p["spec"]) for p in state["policies"].values())


def allowed_by_network_policy(direction, subject, other, dst, port, proto, state):
    """Whether `subject`'s policies let traffic with `other` through in `direction`."""
    ns = subject.split("/")[0]
    isolating = [p for p in state["policies"].values()
                 if p["metadata"]["namespace"] == ns and selects(p["spec"]["podSelector"], state["pods"][subject])
                 and direction in policy_types(p["spec"])]
    if not isolating:
        return True
    key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    for p in isolating:
        for rule in p["spec"].get(key) or []:
            peers = rule.get(peers_key)
            if peers and not any(peer_matches(pe, ns, other, state) for pe in peers):
                continue
            if port_matches(rule.get("ports"), dst, port, proto):
                return True
    return False


def matrix(state, port, proto):
    lines = ["    " + " ".join(ALL)]
    for src in ALL:
        cells = []
        for dst in ALL:
            if src == dst:
                cells.append("-  ")
                continue
            ok = allowed_one_way("Egress", src, dst, dst, port, proto, state) and \
                allowed_one_way("Ingress", dst, src, dst, port, proto, state)
            cells.append(".  " if ok else "X  ")
        lines.append(src + " " + " ".join(cells).rstrip())
    return "\n".join(lines) + "\n"


def np(name, ns, spec):
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": name, "namespace": ns}, "spec": spec}


def cnp(name, tier, priority, subject, ingress=None, egress=None):
    spec = {"tier": tier, "priority": priority, "subject": subject}
    if ingress:
        spec["ingress"] = ingress
    if egress:
        spec["egress"] = egress
    return {"apiVersion": "policy.networking.k8s.io/v1alpha2", "kind": "ClusterNetworkPolicy", "metadata": {"name": name}, "spec": spec}


TCP80, TCP81, UDP80, UDP81 = "TCP/80", "TCP/81", "UDP/80", "UDP/81"
EVERY = [TCP80, TCP81, UDP80, UDP81]
pod_a = {"matchLabels": {"pod": "a"}}

# Each case: name, description, steps; a step: apply (policies), delete, podLabels,
# namespaceLabels, ports (probed after the step).
CASES = [
    ("baseline-no-policies", "no policies: every pair connects, TCP and UDP, both ports", [
        {"ports": EVERY}]),
    ("deny-all-ingress-in-x", "k/k: should support a 'default-deny-ingress' policy", [
        {"apply": [np("deny-ingress", "x", {"podSelector": {}, "policyTypes": ["Ingress"]})], "ports": [TCP80, UDP81]}]),
    ("deny-all-egress-in-x", "k/k: should support a 'default-deny-all' policy (egress half)", [
        {"apply": [np("deny-egress", "x", {"podSelector": {}, "policyTypes": ["Egress"]})], "ports": [TCP80, UDP81]}]),
    ("deny-all-both-in-x", "k/k: should support a 'default-deny-all' policy", [
        {"apply": [np("deny-all", "x", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]})], "ports": [TCP80, UDP80]}]),
    ("allow-from-same-namespace-only", "k/k: should support allow-all policy within namespace only", [
        {"apply": [np("allow-same-ns", "x", {"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]})], "ports": [TCP80, UDP80]}]),
    ("allow-from-all-namespaces", "k/k: should allow ingress from all namespaces (namespaceSelector: {})", [
        {"apply": [np("deny-ingress", "x", {"podSelector": {}, "policyTypes": ["Ingress"]}),
                   np("allow-all-ns", "x", {"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {}}]}]})],
         "ports": [TCP80]}]),
    ("allow-to-pod-from-pod-in-namespace", "k/k: should enforce policy to allow traffic only from a different pod in the same namespace (podSelector)", [
        {"apply": [np("allow-b-to-a", "x", {"podSelector": pod_a, "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}]}]})],
         "ports": [TCP80, UDP80]}]),
    ("allow-from-namespace-selector", "k/k: should enforce policy to allow traffic from pods within server namespace based on namespaceSelector", [
        {"apply": [np("allow-ns-y", "x", {"podSelector": pod_a, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}]}]})],
         "ports": [TCP80]}]),
    ("pod-and-namespace-one-peer", "k/k: should enforce policy based on PodSelector and NamespaceSelector (AND, one peer)", [
        {"apply": [np("and-peer", "x", {"podSelector": pod_a, "ingress": [{"from": [
            {"namespaceSelector": {"matchLabels": {"ns": "y"}}, "podSelector": {"matchLabels": {"pod": "b"}}}]}]})],
         "ports": [TCP80]}]),
    ("pod-or-namespace-two-peers", "k/k: should enforce policy based on PodSelector or NamespaceSelector (OR, two peers)", [
        {"apply": [np("or-peers", "x", {"podSelector": pod_a, "ingress": [{"from": [
            {"namespaceSelector": {"matchLabels": {"ns": "y"}}}, {"podSelector": {"matchLabels": {"pod": "b"}}}]}]})],
         "ports": [TCP80]}]),
    ("namespace-selector-match-expressions", "k/k: should enforce policy based on NamespaceSelector with MatchExpressions", [
        {"apply": [np("ns-expr", "x", {"podSelector": pod_a, "ingress": [{"from": [
            {"namespaceSelector": {"matchExpressions": [{"key": "ns", "operator": "In", "values": ["y"]}]}}]}]})],
         "ports": [TCP80]}]),
    ("pod-selector-match-expressions-any-namespace", "k/k: should enforce policy based on PodSelector with MatchExpressions (in every namespace)", [
        {"apply": [np("pod-expr", "x", {"podSelector": pod_a, "ingress": [{"from": [
            {"namespaceSelector": {}, "podSelector": {"matchExpressions": [{"key": "pod", "operator": "NotIn", "values": ["b"]}]}}]}]})],
         "ports": [TCP80]}]),
    ("ingress-on-one-numbered-port", "k/k: should enforce policy based on Ports", [
        {"apply": [np("port-81", "x", {"podSelector": pod_a, "ingress": [{"ports": [{"port": 81}]}]})], "ports": [TCP80, TCP81, UDP81]}]),
    ("named-port-ingress", "k/k: should allow ingress access on one named port", [
        {"apply": [np("named-80", "x", {"podSelector": pod_a, "ingress": [{"ports": [{"port": "serve-80-tcp"}]}]})],
         "ports": [TCP80, TCP81, UDP80]}]),
    ("named-port-egress", "k/k: should allow egress access on one named port", [
        {"apply": [np("named-egress-80", "x", {"podSelector": pod_a, "policyTypes": ["Egress"], "egress": [{"ports": [{"port": "serve-80-tcp"}]}]})],
         "ports": [TCP80, TCP81]}]),
    ("named-port-protocol-mismatch", "cyclonus: a named port whose protocol does not match opens nothing", [
        {"apply": [np("named-udp-on-tcp", "x", {"podSelector": pod_a, "ingress": [{"ports": [{"port": "serve-80-tcp", "protocol": "UDP"}]}]})],
         "ports": [TCP80, UDP80]}]),
    ("udp-rule-is-not-tcp", "k/k: should not mistakenly treat 'protocol: UDP' as 'protocol: TCP'", [
        {"apply": [np("udp-80", "x", {"podSelector": pod_a, "ingress": [{"ports": [{"port": 80, "protocol": "UDP"}]}]})],
         "ports": [TCP80, UDP80]}]),
    ("protocol-only-port-entry", "a ports entry with a protocol and no port: every port of that protocol", [
        {"apply": [np("udp-any", "x", {"podSelector": pod_a, "ingress": [{"ports": [{"protocol": "UDP"}]}]})],
         "ports": [TCP80, UDP80, UDP81]}]),
    ("endport-range-inclusive", "cyclonus: endPort is inclusive (80-81 TCP opens both ports, not UDP)", [
        {"apply": [np("range", "x", {"podSelector": pod_a, "ingress": [{"ports": [{"port": 80, "endPort": 81, "protocol": "TCP"}]}]})],
         "ports": [TCP80, TCP81, UDP81]}]),
    ("endport-range-excludes-above", "endPort bounds the range: 79-80 opens 80, not 81", [
        {"apply": [np("range-79-80", "x", {"podSelector": pod_a, "ingress": [{"ports": [{"port": 79, "endPort": 80}]}]})],
         "ports": [TCP80, TCP81]}]),
    ("egress-denied-on-client-even-if-server-allows", "k/k: should enforce egress policy allowing traffic to a server in a different namespace based on PodSelector and NamespaceSelector (client side denies)", [
        {"apply": [np("deny-egress-a", "x", {"podSelector": pod_a, "policyTypes": ["Egress"]}),
                   np("allow-all-ingress", "y", {"podSelector": {}, "ingress": [{}]})],
         "ports": [TCP80]}]),
    ("egress-to-namespace-and-pod", "k/k: should enforce egress policy allowing traffic to a server in a different namespace based on PodSelector and NamespaceSelector", [
        {"apply": [np("egress-y-b", "x", {"podSelector": pod_a, "policyTypes": ["Egress"], "egress": [{"to": [
            {"namespaceSelector": {"matchLabels": {"ns": "y"}}, "podSelector": {"matchLabels": {"pod": "b"}}}]}]})],
         "ports": [TCP80, UDP80]}]),
    ("deny-all-except-dns-egress", "cyclonus: egress only to port 53: pod traffic on 80/81 blocked", [
        {"apply": [np("dns-only", "x", {"podSelector": {}, "policyTypes": ["Egress"], "egress": [
            {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}]})],
         "ports": [TCP80, UDP80]}]),
    ("ipblock-pod-ip-egress", "k/k: should enforce egress policy allowing traffic to a server via an ipBlock of its pod IP (/32)", [
        {"apply": [np("egress-ip", "x", {"podSelector": pod_a, "policyTypes": ["Egress"], "egress": [
            {"to": [{"ipBlock": {"cidr": "{{ip y/b}}/32"}}]}]})],
         "ports": [TCP80, UDP80]}]),
    ("ipblock-with-except-ingress", "k/k: should enforce except clause while ingress access (pod IPs)", [
        {"apply": [np("ingress-except", "x", {"podSelector": pod_a, "ingress": [
            {"from": [{"ipBlock": {"cidr": "10.244.0.0/16", "except": ["{{ip y/b}}/32"]}}]}]})],
         "ports": [TCP80]}]),
    ("ipblock-updated-in-place", "k/k: should ensure an IP overlapping both IPBlock.CIDR and IPBlock.Except is allowed (policy updated)", [
        {"apply": [np("egress-block", "x", {"podSelector": pod_a, "policyTypes": ["Egress"], "egress": [
            {"to": [{"ipBlock": {"cidr": "10.244.0.0/16", "except": ["{{ip y/b}}/32"]}}]}]})],
         "ports": [TCP80]},
        {"apply": [np("egress-block", "x", {"podSelector": pod_a, "policyTypes": ["Egress"], "egress": [
            {"to": [{"ipBlock": {"cidr": "10.244.0.0/16", "except": ["{{ip y/b}}/32"]}}]},
            {"to": [{"ipBlock": {"cidr": "{{ip y/b}}/32"}}]}]})],
         "ports": [TCP80]}]),
    ("union-two-ingress-policies", "k/k: multiple policies on one pod: union of their rules", [
        {"apply": [np("from-b", "x", {"podSelector": pod_a, "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}]}]}),
                   np("from-y", "x", {"podSelector": pod_a, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}]}]})],
         "ports": [TCP80]}]),
    ("union-ingress-allow-all-wins", "k/k: should allow ingress access from updated namespace / deny-all plus allow-all: allow-all wins", [
        {"apply": [np("deny-ingress", "x", {"podSelector": {}, "policyTypes": ["Ingress"]}),
                   np("allow-all-to-a", "x", {"podSelector": pod_a, "ingress": [{}]})],
         "ports": [TCP80, UDP81]}]),
    ("union-ports-of-two-policies", "two policies on one pod, one per port: both ports open", [
        {"apply": [np("only-80", "x", {"podSelector": pod_a, "ingress": [{"ports": [{"port": 80}]}]}),
                   np("only-81", "x", {"podSelector": pod_a, "ingress": [{"ports": [{"port": 81}]}]})],
         "ports": [TCP80, TCP81, UDP80]}]),
    ("ingress-and-egress-in-one-policy", "k/k: should enforce ingress and egress policy in one policy", [
        {"apply": [np("both", "x", {"podSelector": pod_a, "policyTypes": ["Ingress", "Egress"],
                                    "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}]}],
                                    "egress": [{"to": [{"namespaceSelector": {"matchLabels": {"ns": "z"}}}]}]})],
         "ports": [TCP80]}]),
    ("ingress-and-egress-in-two-policies", "the same rules as ingress-and-egress-in-one-policy, split over two policies", [
        {"apply": [np("in", "x", {"podSelector": pod_a, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}]}]}),
                   np("out", "x", {"podSelector": pod_a, "policyTypes": ["Egress"],
                                   "egress": [{"to": [{"namespaceSelector": {"matchLabels": {"ns": "z"}}}]}]})],
         "ports": [TCP80]}]),
    ("egress-rules-default-ingress-isolation", "defaults.go: egress rules without policyTypes also isolate ingress", [
        {"apply": [np("egress-no-types", "x", {"podSelector": pod_a, "egress": [{}]})], "ports": [TCP80]}]),
    ("policy-updated-allow-all-to-deny-all", "k/k: should stop enforcing policies after they are deleted / updated", [
        {"apply": [np("switch", "x", {"podSelector": {}, "ingress": [{}]})], "ports": [TCP80]},
        {"apply": [np("switch", "x", {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": []})], "ports": [TCP80]},
        {"delete": ["x/switch"], "ports": [TCP80]}]),
    ("policy-deleted-restores-traffic", "k/k: should stop enforcing policies after they are deleted", [
        {"apply": [np("deny-all", "x", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]})], "ports": [TCP80]},
        {"delete": ["x/deny-all"], "ports": [TCP80, UDP80]}]),
    ("pod-label-added-to-client", "k/k: should allow ingress access from updated pod", [
        {"apply": [np("from-clients", "x", {"podSelector": pod_a, "ingress": [{"from": [
            {"namespaceSelector": {}, "podSelector": {"matchLabels": {"role": "client"}}}]}]})],
         "ports": [TCP80]},
        {"podLabels": {"y/c": {"pod": "c", "role": "client"}}, "ports": [TCP80]}]),
    ("pod-label-changed-on-server", "k/k: should deny ingress access to updated pod", [
        {"apply": [np("deny-isolated", "x", {"podSelector": {"matchLabels": {"isolated": "true"}}, "policyTypes": ["Ingress"]})],
         "ports": [TCP80]},
        {"podLabels": {"x/b": {"pod": "b", "isolated": "true"}}, "ports": [TCP80]}]),
    ("namespace-label-added", "k/k: should allow ingress access from updated namespace", [
        {"apply": [np("from-blue", "x", {"podSelector": pod_a, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "blue"}}}]}]})],
         "ports": [TCP80]},
        {"namespaceLabels": {"z": {"ns": "z", "kubernetes.io/metadata.name": "z", "team": "blue"}}, "ports": [TCP80]}]),
    ("namespace-label-removed", "k/k: should deny ingress from pods on other namespaces (namespace label changes)", [
        {"namespaceLabels": {"y": {"ns": "y", "kubernetes.io/metadata.name": "y", "team": "blue"}},
         "apply": [np("from-blue", "x", {"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "blue"}}}]}]})],
         "ports": [TCP80]},
        {"namespaceLabels": {"y": {"ns": "y", "kubernetes.io/metadata.name": "y"}}, "ports": [TCP80]}]),
    ("metadata-name-label-selects-namespace", "kubernetes.io/metadata.name selects a namespace by name", [
        {"apply": [np("from-z-by-name", "x", {"podSelector": pod_a, "ingress": [{"from": [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "z"}}}]}]})],
         "ports": [TCP80]}]),
    ("sctp-rule-is-not-tcp", "k/k: should not mistakenly treat 'protocol: SCTP' as 'protocol: TCP'", [
        {"apply": [np("sctp-80", "x", {"podSelector": pod_a, "ingress": [{"ports": [{"port": 80, "protocol": "SCTP"}]}]})],
         "ports": [TCP80, "SCTP/80"]}]),

    # The cluster-wide tiers (ClusterNetworkPolicy v1alpha2): Admin tier, then NetworkPolicy,
    # then Baseline tier (npa apis/v1alpha2, NPEP-285).
    ("tier-admin-deny-overrides-np-allow", "CNP: an Admin Deny wins over a NetworkPolicy that allows", [
        {"apply": [np("allow-all", "x", {"podSelector": {}, "ingress": [{}]}),
                   cnp("deny-from-y", "Admin", 10, {"namespaces": {"matchLabels": {"ns": "x"}}},
                       ingress=[{"name": "no-y", "action": "Deny", "from": [{"namespaces": {"matchLabels": {"ns": "y"}}}]}])],
         "ports": [TCP80, UDP80]}]),
    ("tier-admin-accept-overrides-np-deny", "CNP: an Admin Accept wins over NetworkPolicy's default deny (one port)", [
        {"apply": [np("deny-ingress", "x", {"podSelector": {}, "policyTypes": ["Ingress"]}),
                   cnp("accept-y-80", "Admin", 10, {"pods": {"namespaceSelector": {"matchLabels": {"ns": "x"}}, "podSelector": pod_a}},
                       ingress=[{"action": "Accept", "from": [{"namespaces": {"matchLabels": {"ns": "y"}}}],
                                 "protocols": [{"tcp": {"destinationPort": {"number": 80}}}]}])],
         "ports": [TCP80, TCP81]}]),
    ("tier-admin-pass-then-np", "CNP: an Admin Pass skips the rest of the Admin tier and NetworkPolicy decides", [
        {"apply": [np("from-y", "x", {"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}]}]}),
                   cnp("pass-y", "Admin", 1, {"namespaces": {"matchLabels": {"ns": "x"}}},
                       ingress=[{"action": "Pass", "from": [{"namespaces": {"matchLabels": {"ns": "y"}}}]}]),
                   cnp("deny-rest", "Admin", 2, {"namespaces": {"matchLabels": {"ns": "x"}}},
                       ingress=[{"action": "Deny", "from": [{"pods": {"namespaceSelector": {}, "podSelector": {}}}]}])],
         "ports": [TCP80]}]),
    ("tier-baseline-deny-non-isolated", "CNP: a Baseline Deny applies to pods no NetworkPolicy isolates", [
        {"apply": [cnp("baseline-no-y", "Baseline", 10, {"namespaces": {}},
                       ingress=[{"action": "Deny", "from": [{"namespaces": {"matchLabels": {"ns": "y"}}}]}])],
         "ports": [TCP80, UDP81]}]),
    ("tier-baseline-ignored-for-np-isolated", "CNP: NetworkPolicy isolation overrides the Baseline tier", [
        {"apply": [np("allow-all", "x", {"podSelector": {}, "ingress": [{}]}),
                   cnp("baseline-no-y", "Baseline", 10, {"namespaces": {}},
                       ingress=[{"action": "Deny", "from": [{"namespaces": {"matchLabels": {"ns": "y"}}}]}])],
         "ports": [TCP80]}]),
    ("tier-priority-order", "CNP: the lower priority number decides; changing priorities flips the answer", [
        {"apply": [np("deny-ingress", "x", {"podSelector": {}, "policyTypes": ["Ingress"]}),
                   cnp("accept-y", "Admin", 20, {"namespaces": {"matchLabels": {"ns": "x"}}},
                       ingress=[{"action": "Accept", "from": [{"namespaces": {"matchLabels": {"ns": "y"}}}]}]),
                   cnp("deny-y-b", "Admin", 10, {"namespaces": {"matchLabels": {"ns": "x"}}},
                       ingress=[{"action": "Deny", "from": [{"pods": {"namespaceSelector": {"matchLabels": {"ns": "y"}},
                                                                      "podSelector": {"matchLabels": {"pod": "b"}}}}]}])],
         "ports": [TCP80]},
        {"apply": [cnp("deny-y-b", "Admin", 30, {"namespaces": {"matchLabels": {"ns": "x"}}},
                       ingress=[{"action": "Deny", "from": [{"pods": {"namespaceSelector": {"matchLabels": {"ns": "y"}},
                                                                      "podSelector": {"matchLabels": {"pod": "b"}}}}]}])],
         "ports": [TCP80]}]),
    ("tier-rule-order", "CNP: rules in written order; reversing them flips the answer", [
        {"apply": [cnp("ordered", "Admin", 10, {"namespaces": {"matchLabels": {"ns": "z"}}},
                       ingress=[{"action": "Accept", "from": [{"pods": {"namespaceSelector": {}, "podSelector": pod_a}}]},
                                {"action": "Deny", "from": [{"namespaces": {}}]}])],
         "ports": [TCP80]},
        {"apply": [cnp("ordered", "Admin", 10, {"namespaces": {"matchLabels": {"ns": "z"}}},
                       ingress=[{"action": "Deny", "from": [{"namespaces": {}}]},
                                {"action": "Accept", "from": [{"pods": {"namespaceSelector": {}, "podSelector": pod_a}}]}])],
         "ports": [TCP80]}]),
    ("tier-egress-networks-deny", "CNP: an Admin egress Deny to networks matches pod addresses (after service DNAT)", [
        {"apply": [cnp("no-y-b-80", "Admin", 10, {"namespaces": {"matchLabels": {"ns": "x"}}},
                       egress=[{"action": "Deny", "to": [{"networks": ["{{ip y/b}}/32"]}],
                                "protocols": [{"tcp": {"destinationPort": {"number": 80}}}]}])],
         "ports": [TCP80, TCP81]}]),
    ("tier-egress-named-port", "CNP: destinationNamedPort resolves on each destination pod", [
        {"apply": [cnp("no-81-to-y", "Admin", 10, {"pods": {"namespaceSelector": {}, "podSelector": pod_a}},
                       egress=[{"action": "Deny", "to": [{"namespaces": {"matchLabels": {"ns": "y"}}}],
                                "protocols": [{"destinationNamedPort": "serve-81-tcp"}]}])],
         "ports": [TCP80, TCP81, UDP81]}]),
]

HEADER = """\
# NetworkPolicy conformance cases on the upstream model (k/k test/e2e/network/netpol):
# namespaces x, y, z labelled `ns: <name>` and `kubernetes.io/metadata.name: <name>`; pods a, b,
# c in each labelled `pod: <name>`, each serving TCP and UDP on 80 and 81 (container ports
# named serve-<port>-<proto>); one ClusterIP Service per pod.
#
# GENERATED by generate.py (same folder), which computes every matrix with a small evaluator
# of the spec: edit the cases there and regenerate.
#
# Procedure per case: run its steps in order; a step applies its policies (create or update,
# verbatim; {{ip ns/pod}} stands for that pod's address), deletes the policies named
# (namespace/name), replaces the labels given (the whole label set), then probes every listed
# port/protocol with the full 9x9 matrix, once via the destination's pod IP and once via its
# Service ClusterIP (policy is judged on the endpoint, so both give the same answer), and
# re-probes mismatches once (upstream ValidateOrFail). Between cases every policy is deleted
# and every label restored.
#
# Legend: rows are sources, columns destinations; `.` connects, `X` blocked; the diagonal
# (`-`) is not probed.
"""


class Literal(str):
    """A block scalar (|) in the output: policies and matrices stay readable."""


def install_representers():
    def literal(dumper, data):
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|")

    def plain(dumper, data):
        # Quote what a YAML 1.1 reader (go-yaml v2, as in kubectl) takes for a boolean: the
        # namespace y is a name, not "yes".
        quote = data.lower() in {"y", "n", "yes", "no", "on", "off", "true", "false"}
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style='"') if quote else dumper.represent_str(data)

    yaml.add_representer(str, plain, Dumper=yaml.SafeDumper)
    yaml.add_representer(Literal, literal, Dumper=yaml.SafeDumper)


def main():
    install_representers()
    out = []
    for name, desc, steps in CASES:
        state = {"pods": {p: default_pod_labels(p) for p in ALL}, "ns": {n: default_ns_labels(n) for n in NAMESPACES}, "policies": {},
                 "cnps": {}}
        ysteps = []
        for s in steps:
            y = {}
            if "apply" in s:
                for p in s["apply"]:
                    if p["kind"] == "ClusterNetworkPolicy":
                        state["cnps"][p["metadata"]["name"]] = p
                    else:
                        state["policies"][(p["metadata"]["namespace"], p["metadata"]["name"])] = p
                y["apply"] = yaml.safe_dump_all(s["apply"], sort_keys=False, default_flow_style=False)
            if "delete" in s:
                for d in s["delete"]:
                    del state["policies"][tuple(d.split("/"))]
                y["delete"] = s["delete"]
            if "podLabels" in s:
                state["pods"].update(s["podLabels"])
                y["podLabels"] = s["podLabels"]
            if "namespaceLabels" in s:
                state["ns"].update(s["namespaceLabels"])
                y["namespaceLabels"] = s["namespaceLabels"]
            expect = {}
            for pp in s["ports"]:
                proto, port = pp.split("/")
                expect.setdefault(matrix(state, int(port), proto), []).append(pp)
            y["expect"] = [{"ports": ports, "matrix": m} for m, ports in expect.items()]
            ysteps.append(y)
        out.append({"name": name, "description": desc, "steps": ysteps})

    for c in out:
        for s in c["steps"]:
            if "apply" in s:
                s["apply"] = Literal(s["apply"])
            for e in s["expect"]:
                e["matrix"] = Literal(e["matrix"])
    sys.stdout.write(HEADER + yaml.safe_dump({"cases": out}, sort_keys=False, default_flow_style=None, width=200))


if __name__ == "__main__":
    main()
