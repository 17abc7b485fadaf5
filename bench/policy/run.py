#!/usr/bin/env python3
"""NetworkPolicy benchmarks (issue 13) against the release `nodenet agent`, the competitor in the
same run. As root; everything happens in network namespaces named pb<pid>-* that this script
creates and deletes (also on failure); nothing touches the root namespace.

    run.py [--bin NODENET] [--changes N] [--connects N] [--reloads N] [--perf FILE] [--keep]

Cluster (gen.py): 10,000 pods on 100 nodes (100 on this node, pb-node-000), 100 namespaces,
1,000 NetworkPolicies (10 per namespace, a zero-trust mix), applied with `nodenet apply` into the
agent's embedded store. The node namespace has three pod namespaces wired to it by veth (A:
frontend and B: backend of pb-ns-000, C: db of pb-ns-001), which are pods of the cluster.

  rss      agent VmRSS with the pods and no policies, then with the 1,000 policies (4)
  connect  TCP connect A -> B:8080, CONNECTS new connections each, 0 vs 1,000 policies (2);
           with the policies C -> B must be refused (the rules are live) and A -> B accepted;
           in the same interleaved rounds E -> F, two local pods of a namespace no policy
           names (pb-free): the same-run baseline with the 1,000 policies loaded
  change   CHANGES single changes one at a time, alternating a pod label change that changes
           selection and a policy edit: the agent's own store-change-to-kernel-committed
           latency (`nodenet status` policy "programming", the value the
           nodenet_policy_programming_seconds timer records), and the wall time from the start
           of `nodenet apply` until status shows the sync (an upper bound: CLI start, HTTP,
           status polling). Competitor: `nft -f` re-creating the whole per-policy-chain table
           (kube-router / knp style: every change rewrites the table), RELOADS times (1)
  full     nodenet: the agent restarted on its state in a fresh node namespace (empty kernel):
           start to policy in-sync, and the first full sync's own time; competitor: `nft -f` of
           the per-policy-chain table into a fresh namespace (3)
"""
import argparse
import http.client
import json
import socket
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import gen  # noqa: E402

PREFIX = f"pb{os.getpid() % 100000}"


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def sh(argv, input=None, timeout=300, ok=True):
    r = subprocess.run(argv, input=input, capture_output=True, timeout=timeout)
    if ok and r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: exit {r.returncode}: {r.stderr.decode(errors='replace')[-2000:]}")
    return r


def delete_netns(name):
    r = sh(["ip", "netns", "pids", name], ok=False)
    for pid in r.stdout.decode().split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
    sh(["ip", "netns", "del", name], ok=False)


def cleanup_leftovers():
    for line in sh(["ip", "netns", "list"], ok=False).stdout.decode().splitlines():
        name = line.split()[0] if line.split() else ""
        if name.startswith("pb") and name.split("-")[0][2:].isdigit() and not os.path.exists(f"/proc/{name.split('-')[0][2:]}"):
            delete_netns(name)


created = []


def netns(label):
    name = f"{PREFIX}-{label}"
    delete_netns(name)
    sh(["ip", "netns", "add", name])
    created.append(name)
    sh(["ip", "-n", name, "link", "set", "lo", "up"])
    return name


def node_namespace(label):
    n = netns(label)
    for cmd in (["link", "add", "up0", "type", "veth", "peer", "name", "up0p"], ["addr", "add", "192.168.1.11/24", "dev", "up0"],
                ["link", "set", "up0", "up"], ["link", "set", "up0p", "up"]):
        sh(["ip", "-n", n] + cmd)
    sh(["ip", "netns", "exec", n, "sysctl", "-qw", "net.ipv4.ip_forward=1"])
    return n


def pod_namespace(node, label, ip, host_if):
    """A pod namespace routed from the node namespace: ip/32 on eth0, default via 169.254.1.1."""
    p = netns(label)
    sh(["ip", "link", "add", host_if, "netns", node, "type", "veth", "peer", "name", "eth0", "netns", p])
    for cmd in (["addr", "add", f"{ip}/32", "dev", "eth0"], ["link", "set", "eth0", "up"],
                ["route", "add", "169.254.1.1", "dev", "eth0"], ["route", "add", "default", "via", "169.254.1.1"]):
        sh(["ip", "-n", p] + cmd)
    for cmd in (["addr", "add", "169.254.1.1/32", "dev", host_if], ["link", "set", host_if, "up"],
                ["route", "add", f"{ip}/32", "dev", host_if]):
        sh(["ip", "-n", node] + cmd)
    return p


class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=60)
        self.unix_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(60)
        self.sock.connect(self.unix_path)


class Agent:
    def __init__(self, binary, workdir):
        self.binary = binary
        self.state, self.rundir = f"{workdir}/state", f"{workdir}/run"
        self.socket = f"{self.rundir}/nodenet.sock"
        self.logpath = f"{workdir}/agent.log"
        self.args = ["agent", "--node-name", gen.node_name(0), "--node-ip", "192.168.1.11", "--pod-cidrs", "10.244.1.0/24",
                     "--cluster-cidr", "10.244.0.0/16", "--state-dir", self.state, "--run-dir", self.rundir,
                     "--metrics-listen", "", "--log-level", os.environ.get("PB_LOG_LEVEL", "warning"), "--dns-lame-duck", "0",
                     # A stub upstream nothing listens on: DNS never forwards to the machine's resolver.
                     "--dns-upstreams", "127.0.0.1:53535"]
        self.proc = None

    def start(self, node, wrap=()):
        """wrap: a command the agent runs under (perf record ... --); nsenter execs the agent,
        so the wrapper's child is the agent itself."""
        self.started = time.monotonic()
        self.proc = subprocess.Popen(list(wrap) + ["nsenter", f"--net=/var/run/netns/{node}", self.binary] + self.args,
                                     stdout=open(self.logpath, "ab"), stderr=subprocess.STDOUT)

    def cli(self, args, input=None, timeout=300):
        return sh([self.binary] + args + ["--socket", self.socket], input=input, timeout=timeout, ok=False)

    def status(self):
        """`nodenet status --json`, read from the control socket directly: the same JSON, without
        a CLI process per poll (under load one took 10-40 ms, which the start-to-in-sync figure
        of benchmark 3 used to include)."""
        try:
            c = UnixHTTP(self.socket)
            c.request("GET", "/v1/status")
            r = c.getresponse()
            body = r.read()
            c.close()
            return json.loads(body) if r.status == 200 else None
        except (OSError, ValueError, http.client.HTTPException):
            return None

    def policy(self, st):
        row = next(a for a in st["actors"] if a["name"] == "policy")
        return row, st["details"].get("policy", {})

    def wait(self, cond, what, timeout=600, interval=0.01):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"agent exited ({self.proc.returncode}) waiting for {what}: {open(self.logpath).read()[-2000:]}")
            v = cond()
            if v:
                return v
            time.sleep(interval)
        raise RuntimeError(f"timed out after {timeout}s waiting for {what}: {open(self.logpath).read()[-2000:]}")

    def policy_caught_up(self):
        """The policy actor holds the store's current version in the kernel."""
        st = self.status()
        if not st:
            return None
        row, d = self.policy(st)
        if row["state"] == "in-sync" and row.get("appliedVersion", -1) >= st["source"]["storeVersion"]:
            return st
        return None

    def apply(self, path=None, data=None):
        r = self.cli(["apply", "-f", path or "-"], input=data)
        if r.returncode != 0:
            raise RuntimeError(f"nodenet apply {path}: {r.stderr.decode()[-1000:]}")

    def rss_mb(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            return {k: int(v.split()[0]) / 1024 for k, _, v in (l.partition(":") for l in f) if k in ("VmRSS", "VmHWM")}

    def pid(self):
        """The agent's pid (under a wrapper such as perf, the wrapper's child)."""
        if self.proc.args[0] == "nsenter":
            return self.proc.pid
        children = sh(["pgrep", "-P", str(self.proc.pid)], ok=False).stdout.split()
        return int(children[0]) if children else self.proc.pid

    def cpu(self):
        """CPU seconds (user + system) the agent used so far."""
        with open(f"/proc/{self.pid()}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self):
        # Under a wrapper (perf), SIGTERM the agent: the wrapper ends with it.
        children = sh(["pgrep", "-P", str(self.proc.pid)], ok=False).stdout.split()
        if self.proc.args[0] != "nsenter" and children:
            os.kill(int(children[0]), signal.SIGTERM)
        else:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


SERVER = r'''
import socket, os
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("0.0.0.0", 8080)); s.listen(4096)
if os.fork() == 0: pass
while True:
    c, _ = s.accept(); c.close()
'''

CONNECT = r'''
import socket, time, sys
ip, n = sys.argv[1], int(sys.argv[2]); out = []
for i in range(n):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    t = time.perf_counter(); s.connect((ip, 8080)); out.append(time.perf_counter() - t); s.close()
print(" ".join("%.1f" % (x * 1e6) for x in out))
'''

PROBE = r'''
import socket, sys
s = socket.socket(); s.settimeout(2)
try:
    s.connect((sys.argv[1], 8080)); print("accepted")
except ConnectionRefusedError: print("refused")
except OSError as e: print("failed:", e)
'''


def connects(pairs, n, rounds=10):
    """Connect latencies of each (client namespace, server ip) pair, n each, in interleaved
    rounds (the machine's load drifts: each pair sees the same drift)."""
    samples = [[] for _ in pairs]
    for _ in range(rounds):
        for i, (pod, ip) in enumerate(pairs):
            out = sh(["ip", "netns", "exec", pod, "python3", "-c", CONNECT, ip, str(n // rounds)], timeout=600).stdout.decode().split()
            samples[i] += [float(x) for x in out]
    return [{"n": len(v), "p50_us": round(pct(v, 0.5), 1), "p99_us": round(pct(v, 0.99), 1), "mean_us": round(sum(v) / len(v), 1)}
            for v in samples]


def probe(pod, ip):
    return sh(["ip", "netns", "exec", pod, "python3", "-c", PROBE, ip], timeout=30).stdout.decode().strip()


def pct(v, q):
    v = sorted(v)
    return v[min(len(v) - 1, int(len(v) * q))]


def nft_load(ns, path):
    t = time.monotonic()
    sh(["ip", "netns", "exec", ns, "nft", "-f", path], timeout=900)
    return time.monotonic() - t


def only_full(agent, work, a):
    """Benchmark 3 alone, N times: the agent restarted on its state in a fresh node namespace
    (start to policy in sync), interleaved with `nft -f` of the competitor into a fresh
    namespace, so both sides see the same machine load."""
    res = {}
    for d in ("cluster", "policies"):
        for f in sorted(os.listdir(f"{work}/{d}")):
            agent.apply(f"{work}/{d}/{f}")
    agent.wait(agent.policy_caught_up, "policy in sync with everything")
    agent.stop()
    ref = work + "/ref.nft"
    open(ref, "w").write(gen.nft_ruleset())
    res["ref_lines"] = sum(1 for _ in open(ref))
    ours, theirs, first, cpu = [], [], [], []
    for i in range(a.only_full):
        node = node_namespace(f"full{i}")
        wrap = ["perf", "record", "-g", "-o", f"{a.perf}.{i}", "--"] if a.perf else ()
        agent.start(node, wrap)
        st = agent.wait(agent.policy_caught_up, "policy in sync after the restart", 600, 0.005)
        ours.append(time.monotonic() - agent.started)
        cpu.append(agent.cpu())
        first.append(agent.policy(st)[1].get("last sync"))
        if i == 0:
            table = json.loads(sh(["ip", "netns", "exec", node, "nft", "-j", "list", "table", "ip", "nodenet-policy"], timeout=300).stdout)
            res["kernel_elements"] = sum(len(o[k].get("elem", [])) for o in table["nftables"] for k in ("set", "map") if k in o)
        agent.stop()
        delete_netns(node)
        created.remove(node)
        ns = netns(f"ref{i}")
        theirs.append(nft_load(ns, ref))
        delete_netns(ns)
        created.remove(ns)
        log(f"full {i}: nodenet {ours[-1]:.3f} s (first sync {first[-1]}, agent CPU {cpu[-1]:.3f} s), nft -f {theirs[-1]:.3f} s")
    res["full_start_to_policy_in_sync_s"] = [round(x, 3) for x in ours]
    res["full_first_sync"] = first
    # The agent's own CPU (user + system) from its start to in sync: less at the mercy of the
    # machine's load than the wall time.
    res["full_agent_cpu_s"] = [round(x, 3) for x in cpu]
    res["ref_full_load_s"] = [round(x, 3) for x in theirs]
    res["full_median_s"], res["ref_median_s"] = round(pct(ours, 0.5), 3), round(pct(theirs, 0.5), 3)
    res["ratio_full_median"] = round(pct(ours, 0.5) / pct(theirs, 0.5), 4)
    res["ratio_full_per_run"] = [round(x / y, 4) for x, y in zip(ours, theirs)]
    res["loadavg"] = open("/proc/loadavg").read().split()[:3]
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.environ.get("NODENET", os.path.join(HERE, "../../.build/release/nodenet")))
    ap.add_argument("--changes", type=int, default=100)
    ap.add_argument("--connects", type=int, default=2000)
    ap.add_argument("--reloads", type=int, default=5)
    ap.add_argument("--perf", help="perf record -g the agent during the changes into this file")
    ap.add_argument("--keep", action="store_true", help="keep the work dir (agent log, state, generated files)")
    ap.add_argument("--only-full", type=int, metavar="N", default=0,
                    help="benchmark 3 alone: load the cluster and policies, then N agent restarts on the state in fresh "
                         "namespaces interleaved with N `nft -f` loads of the competitor (--perf: the restarts under perf record -g)")
    a = ap.parse_args()
    res = {"binary": os.path.realpath(a.bin)}
    cleanup_leftovers()
    work = tempfile.mkdtemp(prefix="pb-")
    agent = Agent(a.bin, work)
    try:
        gen.write_chunks(gen.cluster(), work + "/cluster", "cluster")
        gen.write_chunks(gen.all_policies(), work + "/policies", "policies")
        for v in "ab":
            open(f"{work}/pod-{v}.json", "w").write(json.dumps(gen.pod_change(v)))
            open(f"{work}/policy-{v}.json", "w").write(json.dumps(gen.policy_change(v)))
        node = node_namespace("node")
        A = pod_namespace(node, "a", gen.pod_ip(0, 0), "pa0")
        B = pod_namespace(node, "b", gen.pod_ip(0, 1), "pb0")
        C = pod_namespace(node, "c", gen.pod_ip(0, 2), "pc0")
        E = pod_namespace(node, "e", gen.FREE_IPS[0], "pe0")
        F = pod_namespace(node, "f", gen.FREE_IPS[1], "pf0")
        servers = [subprocess.Popen(["ip", "netns", "exec", x, "python3", "-c", SERVER]) for x in (B, F)]
        agent.start(node)
        agent.wait(lambda: agent.status(), "control socket", 120, 0.05)
        if a.only_full:
            res.update(only_full(agent, work, a))
            for x in servers:
                x.kill()
            print(json.dumps(res, indent=1))
            return

        t0 = time.monotonic()
        for f in sorted(os.listdir(work + "/cluster")):
            agent.apply(f"{work}/cluster/{f}")
        agent.wait(agent.policy_caught_up, "policy in sync with the pods")
        res["pods_apply_s"] = round(time.monotonic() - t0, 2)
        res["rss_pods_mb"] = agent.rss_mb()
        log("pods loaded", res)
        res["probe_c_to_b_no_policies"] = probe(C, gen.pod_ip(0, 1))
        AB, EF = (A, gen.pod_ip(0, 1)), (E, gen.FREE_IPS[1])
        cpu0 = agent.cpu()
        res["connect_0_policies"], res["connect_free_0_policies"] = connects([AB, EF], a.connects)
        res["connect_0_agent_cpu_s"] = round(agent.cpu() - cpu0, 2)
        res["loadavg_after_connects_0"] = open("/proc/loadavg").read().split()[:3]
        log("connect, 0 policies (A->B, E->F)", res["connect_0_policies"], res["connect_free_0_policies"])

        t0 = time.monotonic()
        for f in sorted(os.listdir(work + "/policies")):
            agent.apply(f"{work}/policies/{f}")
        st = agent.wait(agent.policy_caught_up, "policy in sync with the policies")
        res["policies_apply_to_in_sync_s"] = round(time.monotonic() - t0, 2)
        row, d = agent.policy(st)
        res["policy_row"] = {"counters": row["counters"], "details": d}
        res["rss_policies_mb"] = agent.rss_mb()
        res["rss_added_by_policies_mb"] = round(res["rss_policies_mb"]["VmRSS"] - res["rss_pods_mb"]["VmRSS"], 1)
        log("policies loaded", res["policy_row"], res["rss_policies_mb"])
        res["probe_a_to_b"] = probe(A, gen.pod_ip(0, 1))
        res["probe_c_to_b"] = probe(C, gen.pod_ip(0, 1))
        res["probe_e_to_f"] = probe(E, gen.FREE_IPS[1])
        cpu0 = agent.cpu()
        res["connect_1000_policies"], res["connect_free_1000_policies"] = connects([AB, EF], a.connects)
        res["connect_1000_agent_cpu_s"] = round(agent.cpu() - cpu0, 2)
        res["loadavg_after_connects"] = open("/proc/loadavg").read().split()[:3]
        for q in ("p50", "p99"):
            # The same pair before and after the policies; and in the same rounds, the selected
            # pair against the pair no policy selects.
            res[f"connect_ratio_{q}"] = round(res["connect_1000_policies"][f"{q}_us"] / res["connect_0_policies"][f"{q}_us"], 3)
            res[f"connect_ratio_same_rounds_{q}"] = round(res["connect_1000_policies"][f"{q}_us"] / res["connect_free_1000_policies"][f"{q}_us"], 3)
        log("connect, 1000 policies (A->B, E->F)", res["connect_1000_policies"], res["connect_free_1000_policies"],
            res["probe_a_to_b"], res["probe_c_to_b"], res["probe_e_to_f"])

        perf = None
        if a.perf:
            perf = subprocess.Popen(["perf", "record", "-g", "-o", a.perf, "-p", str(agent.proc.pid)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cpu0 = agent.cpu()
        prog = {"pod": [], "policy": []}
        wall = {"pod": [], "policy": []}
        for i in range(a.changes):
            kind = "pod" if i % 2 == 0 else "policy"
            variant = "b" if (i // 2) % 2 == 0 else "a"
            before = agent.policy(agent.status())[1]["syncs"]
            t0 = time.monotonic()
            agent.apply(f"{work}/{kind}-{variant}.json")

            def synced():
                st = agent.status()
                if st and agent.policy(st)[1]["syncs"] != before and agent.policy_caught_up():
                    return agent.policy(st)[1]
                return None
            d = agent.wait(synced, f"change {i}", 60, 0.002)
            wall[kind].append((time.monotonic() - t0) * 1000)
            prog[kind].append(float(d["programming"].split()[0]))
        res["change_agent_cpu_s"] = round(agent.cpu() - cpu0, 2)
        if perf:
            perf.send_signal(signal.SIGINT)
            perf.wait(60)
        allp = prog["pod"] + prog["policy"]
        res["change"] = {k: {"n": len(v), "p50_ms": round(pct(v, 0.5), 3), "p99_ms": round(pct(v, 0.99), 3), "max_ms": round(max(v), 3)}
                         for k, v in (("programming_all", allp), ("programming_pod", prog["pod"]),
                                      ("programming_policy", prog["policy"]), ("wall_all", wall["pod"] + wall["policy"]))}
        log("changes", res["change"])
        res["rss_end_mb"] = agent.rss_mb()
        agent.stop()

        # nodenet full sync: the agent on its state in a fresh node namespace (empty kernel).
        node2 = node_namespace("node2")
        agent.start(node2)
        if a.perf:
            perf = subprocess.Popen(["perf", "record", "-g", "-o", a.perf + ".full", "-p", str(agent.proc.pid)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        st = agent.wait(agent.policy_caught_up, "policy in sync after the restart", 600, 0.01)
        res["full_start_to_policy_in_sync_s"] = round(time.monotonic() - agent.started, 3)
        if a.perf:
            perf.send_signal(signal.SIGINT)
            perf.wait(60)
        row, d = agent.policy(st)
        res["full_first_sync_ms"] = d.get("last sync")
        res["full_policy_row"] = {"counters": row["counters"], "details": d}
        table = json.loads(sh(["ip", "netns", "exec", node2, "nft", "-j", "list", "table", "ip", "nodenet-policy"], timeout=300).stdout)
        res["kernel_set_sizes"] = {o["set"]["name"]: len(o["set"].get("elem", [])) for o in table["nftables"] if "set" in o}
        res["kernel_set_sizes"].update({o["map"]["name"]: len(o["map"].get("elem", [])) for o in table["nftables"] if "map" in o})
        agent.stop()
        log("full", res["full_start_to_policy_in_sync_s"], res["full_first_sync_ms"])

        # The competitor: the same policies as per-policy chains (gen.py nft), nft -f.
        ref = work + "/ref.nft"
        open(ref, "w").write(gen.nft_ruleset())
        reload = work + "/ref-reload.nft"
        open(reload, "w").write("delete table ip pb-reference\n" + open(ref).read())
        ns = netns("ref")
        res["ref_lines"] = sum(1 for _ in open(ref))
        res["ref_full_load_s"] = round(nft_load(ns, ref), 3)
        reloads = [nft_load(ns, reload) * 1000 for _ in range(a.reloads)]
        res["ref_change_reload_ms"] = {"n": len(reloads), "p50_ms": round(pct(reloads, 0.5), 1), "max_ms": round(max(reloads), 1)}
        log("reference", res["ref_full_load_s"], res["ref_change_reload_ms"])
        res["ratio_change_p99_vs_ref_p50"] = round(res["change"]["programming_all"]["p99_ms"] / res["ref_change_reload_ms"]["p50_ms"], 5)
        res["ratio_full"] = round(res["full_start_to_policy_in_sync_s"] / res["ref_full_load_s"], 4)
        for x in servers:
            x.kill()
        print(json.dumps(res, indent=1))
    finally:
        if agent.proc and agent.proc.poll() is None:
            agent.proc.kill()
        for n in reversed(created):
            delete_netns(n)
        if a.keep:
            log("work dir (agent log):", work)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
