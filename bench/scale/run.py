#!/usr/bin/env python3
"""The scale harness: one agent on node 0 of a generated cluster (gen.py), measured from outside.

    run.py [--size full|tenth|ci] [--bin NODENET] [--baseline NODENET] [--source embedded|etcd|both]
           [--format json|yaml] [--events N] [--check]

For each binary (the one under test, then the baseline if given, e.g. the previous commit's
release build), in a network namespace of its own (`nns<pid>-...`, deleted at the end, also on
failure; nothing touches the root namespace):

  apply      `nodenet apply -f` of every chunk (the control API takes 8 MiB a request):
             objects/s, the agent's RSS after it and its peak (VmHWM)
  in-sync    time until the KERNEL holds the desired state (a route per peer subnet of protocol
             nodenet; every cluster IP and endpoint address in table ip nodenet), from the start
             of the apply and from its end; then whether `nodenet status` tells the truth
             (ready, every actor in-sync, routes counters equal to the kernel's route count)
  events     a new Node to its route, and an EndpointSlice change to its element in nftables,
             each from the store's commit (the agent's `committedAt` in the apply reply) and
             from the start of its apply request (one POST to the control socket), the request
             itself beside; `--perf DIR` records the agent during them
  restart    SIGTERM to exit (stop), start to control socket open, to ready, to in-sync (kernel
             and status); kernel writes seen by `ip monitor route` and `nft monitor` meanwhile
  etcd       the same apply through etcd (`--source etcd`; `nodenet apply` writes to etcd), and
             the first sync of a fresh agent with empty state against etcd's own
             `etcdctl get --prefix` of the same keys, measured in the same run

--check turns every correctness condition into the exit code (the test suite runs
`--size ci --check`): kernel state equal to the desired one, truthful status, nothing rewritten
in the kernel by a restart, both events reaching the kernel. Times are reported, never asserted.
"""
import argparse
import ctypes
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import gen  # noqa: E402

PREFIX = f"nns{os.getpid() % 100000}"
IPV4 = re.compile(rb"\b(?:\d{1,3}\.){3}\d{1,3}\b")
failures = []
args_timeout = 600


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def check(cond, what):
    if not cond:
        failures.append(what)
        log(f"CHECK FAILED: {what}")
    return cond


def sh(argv, input=None, timeout=120, ok=True):
    r = subprocess.run(argv, input=input, capture_output=True, timeout=timeout)
    if ok and r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: exit {r.returncode}: {r.stderr.decode(errors='replace')[-2000:]}")
    return r


def cleanup_leftovers():
    r = sh(["ip", "netns", "list"], ok=False)
    for line in r.stdout.decode().splitlines():
        name = line.split()[0] if line.split() else ""
        if name.startswith(PREFIX + "-"):
            delete_netns(name)


def delete_netns(name):
    r = sh(["ip", "netns", "pids", name], ok=False)
    for pid in r.stdout.decode().split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
    sh(["ip", "netns", "del", name], ok=False)


class Node:
    """Node 0's namespace: an uplink (a veth pair: this kernel has no dummy device) with
    172.16.0.1/12, so every peer's InternalIP is on-link and host-gw routes are valid."""

    def __init__(self, label):
        self.name = f"{PREFIX}-{label}"
        delete_netns(self.name)
        sh(["ip", "netns", "add", self.name])
        for cmd in (["link", "set", "lo", "up"],
                    ["link", "add", "uplink0", "type", "veth", "peer", "name", "uplink0p"],
                    ["addr", "add", "172.16.0.1/12", "dev", "uplink0"],
                    ["link", "set", "uplink0", "up"], ["link", "set", "uplink0p", "up"]):
            sh(["ip", "-n", self.name] + cmd)

    @property
    def path(self):
        return f"/var/run/netns/{self.name}"

    def run(self, argv, **kw):
        return sh(["ip", "netns", "exec", self.name] + argv, **kw)

    def popen(self, argv, **kw):
        return subprocess.Popen(["nsenter", f"--net={self.path}"] + argv, **kw)

    def delete(self):
        delete_netns(self.name)


class Agent:
    def __init__(self, binary, node, workdir, source="embedded", extra=()):
        self.binary, self.node, self.workdir = binary, node, workdir
        self.state = os.path.join(workdir, "state")
        self.rundir = os.path.join(workdir, "run")
        self.socket = os.path.join(self.rundir, "nodenet.sock")
        self.logpath = os.path.join(workdir, "agent.log")
        # A stop is measured without DNS's lame-duck pause where the binary can turn it off
        # (`dns.lameDuck`; a binary from before it has a fixed 5 s pause).
        help = sh([binary, "agent", "--help"], ok=False).stdout
        self.lame_duck = b"--dns-lame-duck" not in help
        if not self.lame_duck:
            extra = ["--dns-lame-duck", "0"] + list(extra)
        self.args = ["agent", "--state-dir", self.state, "--run-dir", self.rundir, "--metrics-listen", "",
                     "--node-name", gen.node_name(0), "--node-ip", "172.16.0.1", "--cluster-cidr", "10.128.0.0/9",
                     "--source", source, "--log-level", "warning",
                     # A stub upstream nothing listens on: DNS never forwards to the machine's resolver.
                     "--dns-upstreams", "127.0.0.1:53535"] + list(extra)
        self.proc = None

    def start(self):
        self.logfile = open(self.logpath, "ab")
        self.started = time.monotonic()
        self.proc = self.node.popen([self.binary] + self.args, stdout=self.logfile, stderr=self.logfile)

    def cli(self, args, input=None, timeout=300):
        try:
            return sh([self.binary] + args + ["--socket", self.socket], input=input, timeout=timeout, ok=False)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"nodenet {args[0]} did not answer in {timeout}s: {self.tail()}")

    def status(self):
        r = self.cli(["status", "--json"], timeout=60)
        if r.returncode not in (0, 3):
            return None
        try:
            return json.loads(r.stdout)
        except ValueError:
            return None

    def wait(self, cond, what, timeout, interval=0.02):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"agent exited ({self.proc.returncode}) waiting for {what}: {self.tail()}")
            v = cond()
            if v:
                return v
            time.sleep(interval)
        raise RuntimeError(f"timed out after {timeout}s waiting for {what}: {self.tail()}")

    def socket_open(self):
        return self.cli(["status"], timeout=30).returncode in (0, 3)

    def ready(self):
        return self.cli(["status"], timeout=30).returncode == 0

    def rss(self):
        out = {}
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    k, _, v = line.partition(":")
                    if k in ("VmRSS", "VmHWM"):
                        out[k] = int(v.split()[0]) / 1024.0
        except OSError:
            pass
        return out

    def cpu(self):
        """The agent's CPU seconds so far (user + system): on a shared machine, where wall time
        moves with everyone else's load, the figure that says what the agent itself costs."""
        try:
            with open(f"/proc/{self.proc.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            return 0.0

    def stop(self, timeout=60):
        t = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError(f"agent did not stop in {timeout}s")
        self.logfile.close()
        return time.monotonic() - t, self.proc.returncode

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def tail(self, n=20):
        try:
            with open(self.logpath, "rb") as f:
                return b"\n".join(f.read().splitlines()[-n:]).decode(errors="replace")
        except OSError:
            return ""


class NetlinkMonitor:
    """The kernel's own notifications, read straight from a netlink socket opened in the node's
    namespace: route changes (rtnetlink, RTNLGRP_IPV4_ROUTE) or nftables changes (nfnetlink,
    NFNLGRP_NFTABLES). Each message with its arrival time (time.monotonic(), taken by a thread
    that does nothing else). Unlike `ip monitor` and `nft monitor`, nothing is formatted and
    nothing is read first (`nft monitor` lists the whole ruleset before it prints anything:
    minutes at 10,000 services on a loaded machine), so an event is seen the moment the kernel
    sends it. A wanted address is found as its raw bytes in a message (a route's RTA_DST, an
    element's key data), which is exact for the fresh addresses the events use."""

    ROUTE, NFTABLES = (0, 7), (12, 7)  # (netlink protocol, multicast group)

    def __init__(self, node, which):
        proto, group = which
        libc = ctypes.CDLL(None, use_errno=True)
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        target = os.open(node.path, os.O_RDONLY)
        try:
            # setns is per thread: enter, open the socket (it stays in that namespace), leave.
            if libc.setns(target, 0x40000000) != 0:
                raise OSError(ctypes.get_errno(), "setns into " + node.path)
            try:
                self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, proto)
            finally:
                if libc.setns(own, 0x40000000) != 0:
                    raise OSError(ctypes.get_errno(), "setns back")
        finally:
            os.close(own)
            os.close(target)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.sock.bind((0, 0))
        self.sock.setsockopt(270, 1, group)  # SOL_NETLINK, NETLINK_ADD_MEMBERSHIP
        self.lines = []
        self.lock = threading.Lock()
        self.closed = False
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        while not self.closed:
            try:
                data = self.sock.recv(1 << 20)
            except OSError:
                if self.closed:
                    return
                continue  # ENOBUFS after an overrun: later messages still count
            t = time.monotonic()
            with self.lock:
                self.lines.append((t, data))

    def mark(self):
        with self.lock:
            return len(self.lines)

    def since(self, mark):
        with self.lock:
            return self.lines[mark:]

    def wait_for(self, mark, address, timeout):
        """The arrival time of the first message since `mark` holding `address` (dotted IPv4)."""
        needle = socket.inet_aton(address)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for t, data in self.since(mark):
                if needle in data:
                    return t
            time.sleep(0.0005)
        return None

    def stop(self):
        self.closed = True
        self.sock.close()


def kernel_state(node):
    """Peer routes of protocol nodenet, and every IPv4 address in table ip nodenet."""
    r = node.run(["ip", "-j", "route", "show", "proto", "78"], ok=False)
    routes = {}
    for e in json.loads(r.stdout or b"[]"):
        routes[e["dst"]] = e.get("gateway")
    n = node.run(["nft", "list", "table", "ip", "nodenet"], ok=False, timeout=300)
    addrs = set(m.decode() for m in IPV4.findall(n.stdout))
    return routes, addrs


def kernel_matches(node, expect):
    routes, addrs = kernel_state(node)
    missing_routes = [d for d, gw in expect["routes"].items() if routes.get(d) != gw]
    extra_routes = [d for d in routes if d not in expect["routes"]]
    missing_ips = [a for a in expect["clusterIPs"] if a not in addrs]
    missing_eps = [a for a in expect["endpoints"] if a not in addrs]
    ok = not (missing_routes or extra_routes or missing_ips or missing_eps)
    return ok, dict(routes=len(routes), missing_routes=len(missing_routes), extra_routes=len(extra_routes),
                    missing_cluster_ips=len(missing_ips), missing_endpoints=len(missing_eps))


def wait_kernel(agent, expect, timeout, detail=None):
    """Polls the kernel until it holds the desired state. Returns the time the passing check
    started: the kernel held the state by then or during that check, which at 10,000 services
    takes seconds (`nft list` of the table); its duration is left in `detail["check_s"]`."""
    last = {}
    started = [0.0]

    def cond():
        nonlocal last
        started[0] = time.monotonic()
        ok, last = kernel_matches(agent.node, expect)
        return ok
    try:
        agent.wait(cond, "the kernel to hold the desired state", timeout, interval=0.05)
    except RuntimeError:
        log(f"kernel at timeout: {last}")
        raise
    if detail is not None:
        detail["check_s"] = round(time.monotonic() - started[0], 2)
    return started[0]


def status_truth(agent, expect):
    """`nodenet status` against the kernel: ready, every actor in-sync, routes counters right."""
    st = agent.wait(lambda: agent.status(), "status", 60)
    rows = {a["name"]: a for a in st["actors"]}
    routes, _ = kernel_state(agent.node)
    want = len(expect["routes"])
    r = rows.get("routes", {})
    summary = {a: rows[a]["state"] for a in rows}
    check(st["agent"]["ready"], "status: ready")
    for name, row in rows.items():
        check(row["state"] == "in-sync", f"status: actor {name} in-sync (is {row['state']}: {row['message']})")
    check(r.get("counters", {}).get("peers") == want, f"status: routes peers counter {r.get('counters', {}).get('peers')} == {want}")
    check(r.get("counters", {}).get("routes") == len(routes), f"status: routes counter {r.get('counters', {}).get('routes')} == kernel {len(routes)}")
    svc = rows.get("services", {}).get("counters", {})
    check(svc.get("services") == len(expect["clusterIPs"]), f"status: services counter {svc.get('services')} == {len(expect['clusterIPs'])}")
    objects = sum(v for k, v in st["objects"].items() if k in ("Node", "Pod", "Service", "EndpointSlice", "Namespace"))
    check(objects == expect["objects"], f"status: object count {objects} == {expect['objects']}")
    return summary


def status_claims_in_sync(agent):
    st = agent.status()
    if st and st["agent"]["ready"] and all(a["state"] == "in-sync" for a in st["actors"]):
        return st
    return None


def status_does_not_claim_early(agent, expect, res):
    """Right after an apply: once `nodenet status` says every actor is in sync, the kernel must
    already hold the desired state (in-sync means the kernel has it, not that a loop ran once).
    Strict for routes; for services once their row reports the store version it applied
    (`appliedVersion`), reported otherwise."""
    st = agent.wait(lambda: status_claims_in_sync(agent), "status: every actor in-sync", args_timeout, interval=0.02)
    t = time.monotonic()
    ok, detail = kernel_matches(agent.node, expect)
    check(detail["missing_routes"] == 0 and detail["extra_routes"] == 0,
          f"status said routes in-sync while the kernel lacked routes: {detail}")
    services_ok = detail["missing_cluster_ips"] == 0 and detail["missing_endpoints"] == 0
    rows = {a["name"]: a for a in st["actors"]}
    if rows.get("services", {}).get("appliedVersion") is not None:
        check(services_ok, f"status said services in-sync while the kernel lacked rules: {detail}")
    else:
        res["services_status_in_sync_before_kernel"] = not services_ok
    return t


def apply_chunks(agent, chunks):
    t0 = time.monotonic()
    for path in chunks:
        with open(path, "rb") as f:
            data = f.read()
        r = agent.cli(["apply", "-f", "-"], input=data, timeout=600)
        if r.returncode != 0:
            raise RuntimeError(f"apply {path}: {r.stderr.decode(errors='replace')[-1000:]}")
    return t0, time.monotonic()


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over the agent's control socket (what `nodenet apply` speaks), so an event's
    request is timed without the CLI's process start and its reply (`committedAt`) read."""

    def __init__(self, path, timeout):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.unix_path)


def post_apply(agent, obj, path="/v1/apply", timeout=60):
    """One apply through the control API: (start, end, reply) on time.monotonic(). The reply's
    `committedAt` (CLOCK_MONOTONIC seconds, the same clock as time.monotonic() on Linux) is when
    the store published the change, after its fsync'd commit; binaries before it lack it."""
    body = json.dumps(obj).encode()
    conn = UnixHTTPConnection(agent.socket, timeout)
    try:
        t0 = time.monotonic()
        conn.request("POST", path, body=body, headers={"Content-Type": "application/json", "Connection": "close"})
        r = conn.getresponse()
        data = r.read()
        t1 = time.monotonic()
    finally:
        conn.close()
    if r.status != 200:
        raise RuntimeError(f"POST {path}: HTTP {r.status}: {data[-300:]!r}")
    return t0, t1, json.loads(data)


def pct(values, p):
    v = sorted(values)
    if not v:
        return None
    return v[min(len(v) - 1, int(round(p / 100.0 * (len(v) - 1))))]


def event_latencies(agent, cluster, n, perf_dir=None, label=""):
    """A new Node to its route; an EndpointSlice change to its element. Each change is one
    POST to the control API (what `nodenet apply` sends, without the CLI's process start).
    Per event: `*_commit` from the store's commit (its change published, after the fsync'd
    SQLite write; the agent's `committedAt`) to the monitor seeing the kernel's notification,
    the figure the < 20 ms target is about; `*` from the start of the request; `*_request` the
    request itself (decode, admission, the fsync'd commit, the reply)."""
    out = {k: [] for k in ("node", "node_commit", "node_request", "slice", "slice_commit", "slice_request")}
    routes = NetlinkMonitor(agent.node, NetlinkMonitor.ROUTE)
    nft = NetlinkMonitor(agent.node, NetlinkMonitor.NFTABLES)
    perf = None
    try:
        # One unmeasured change first (the first event after the apply pays for caches and
        # page faults nobody else would see), waited for.
        warm = cluster.slice(0)
        warm["endpoints"][0]["addresses"] = ["10.255.0.100"]
        mark = nft.mark()
        post_apply(agent, warm)
        check(nft.wait_for(mark, "10.255.0.100", 60) is not None, "warm-up change seen in nftables")
        mark = nft.mark()
        post_apply(agent, cluster.slice(0))
        nft.wait_for(mark, cluster.slice(0)["endpoints"][0]["addresses"][0], 60)
        if perf_dir:
            # The events' profile: attached to the running agent for this phase only.
            perf = subprocess.Popen(["perf", "record", "-g", "-F", "999", "-p", str(agent.proc.pid), "-o",
                                     os.path.join(perf_dir, f"events-{label}.perf.data")],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.5)

        def record(kind, t0, t1, reply, t):
            out[kind].append(t - t0)
            out[kind + "_request"].append(t1 - t0)
            if "committedAt" in reply:
                out[kind + "_commit"].append(t - reply["committedAt"])
            else:
                # The binary under test reports its commit time; a baseline may predate it.
                check(label != "new", f"{kind} apply reply carries committedAt: {reply}")

        base = cluster.p["nodes"]
        for i in range(n):
            idx = base + i
            mark = routes.mark()
            t0, t1, reply = post_apply(agent, cluster.node(idx))
            t = routes.wait_for(mark, gen.node_cidr(idx).split("/")[0], 10)
            if check(t is not None, f"route for new node {idx} reached the kernel"):
                record("node", t0, t1, reply, t)
        for i in range(n):
            s = i % cluster.p["services"]
            sl = cluster.slice(s)
            # A fresh address nothing else uses: .250 of node i+1's subnet.
            fresh = f"10.{128 + (i + 1) // 256}.{(i + 1) % 256}.250"
            sl["endpoints"][0]["addresses"] = [fresh]
            sl["endpoints"][0]["targetRef"]["name"] = f"fresh-{i}"
            mark = nft.mark()
            t0, t1, reply = post_apply(agent, sl)
            t = nft.wait_for(mark, fresh, 10)
            if check(t is not None, f"endpoint {fresh} of service {s} reached nftables"):
                record("slice", t0, t1, reply, t)
            # Put the slice back so the desired state stays the generated one, and wait for it
            # so the next event does not queue behind this one's transaction.
            orig = cluster.slice(s)
            mark = nft.mark()
            post_apply(agent, orig)
            check(nft.wait_for(mark, orig["endpoints"][0]["addresses"][0], 10) is not None, "restore slice")
        # Remove the extra nodes again.
        extra = {"apiVersion": "v1", "kind": "List", "items": [cluster.node(base + i) for i in range(n)]}
        post_apply(agent, extra, path="/v1/delete")
    finally:
        if perf:
            perf.send_signal(signal.SIGINT)
            perf.wait(timeout=120)
        routes.stop()
        nft.stop()
    summary = {}
    for k, v in out.items():
        if v:
            summary[k] = dict(n=len(v), p50_ms=round(pct(v, 50) * 1000, 1), p99_ms=round(pct(v, 99) * 1000, 1),
                              max_ms=round(max(v) * 1000, 1))
    return summary


def restart(agent, expect):
    """Stop, start on the same state; times and the kernel writes the restart caused."""
    # Netlink sockets of our own: `nft monitor` would still be reading the ruleset (minutes at
    # full size) while the restart happens, and miss its writes.
    routes = NetlinkMonitor(agent.node, NetlinkMonitor.ROUTE)
    nft = NetlinkMonitor(agent.node, NetlinkMonitor.NFTABLES)
    res = {}
    try:
        rmark, nmark = routes.mark(), nft.mark()
        res["stop_s"], code = agent.stop()
        res["stop_includes_5s_dns_lame_duck"] = agent.lame_duck
        check(code == 0, f"agent exit status after SIGTERM: {code}")
        agent.start()
        t0 = agent.started
        c0 = 0.0
        agent.wait(agent.socket_open, "control socket", args_timeout, interval=0.005)
        res["socket_s"] = time.monotonic() - t0
        agent.wait(agent.ready, "ready", args_timeout, interval=0.01)
        res["ready_s"] = time.monotonic() - t0

        def in_sync():
            st = agent.status()
            return st and st["agent"]["ready"] and all(a["state"] == "in-sync" for a in st["actors"])
        agent.wait(in_sync, "every actor in-sync", args_timeout, interval=0.01)
        res["in_sync_status_s"] = time.monotonic() - t0
        res["in_sync_kernel_s"] = wait_kernel(agent, expect, args_timeout) - t0
        res["agent_cpu_to_in_sync_s"] = agent.cpu() - c0
        rss = agent.rss()
        res["rss_mb"] = round(rss.get("VmRSS", 0), 1)
        res["peak_mb"] = round(rss.get("VmHWM", 0), 1)
        time.sleep(1.0)  # late writes would show now
        res["kernel_route_writes"] = len(routes.since(rmark))
        res["kernel_nft_writes"] = len(nft.since(nmark))
        res["kernel_nft_writes_sample"] = [x[1][:64].hex() for x in nft.since(nmark)[:12]]
        check(res["kernel_route_writes"] == 0, f"restart rewrote no route ({res['kernel_route_writes']} route events)")
        check(res["kernel_nft_writes"] == 0, f"restart rewrote no nftables object ({res['kernel_nft_writes']} events)")
    finally:
        routes.stop()
        nft.stop()
    return res


def start_etcd(node, workdir):
    data = os.path.join(workdir, "etcd")
    logf = open(os.path.join(workdir, "etcd.log"), "ab")
    p = node.popen(["etcd", "--data-dir", data, "--listen-client-urls", "http://127.0.0.1:2379",
                    "--advertise-client-urls", "http://127.0.0.1:2379", "--listen-peer-urls", "http://127.0.0.1:2380",
                    "--initial-advertise-peer-urls", "http://127.0.0.1:2380", "--initial-cluster", "default=http://127.0.0.1:2380",
                    "--max-txn-ops", "100000", "--max-request-bytes", str(64 << 20),
                    "--quota-backend-bytes", str(8 << 30), "--log-level", "error"], stdout=logf, stderr=logf)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if node.run(["etcdctl", "--endpoints", "http://127.0.0.1:2379", "endpoint", "health"], ok=False).returncode == 0:
            return p
        time.sleep(0.1)
    p.kill()
    raise RuntimeError("etcd did not start")


def run_one(binary, label, args, cluster, expect, chunks):
    res = {"binary": binary}
    node = Node(label)
    workdir = tempfile.mkdtemp(prefix=f"nodenet-scale-{label}-")
    agents = []
    etcd = None
    try:
        if args.source in ("embedded", "both"):
            a = Agent(binary, node, os.path.join(workdir, "embedded"))
            os.makedirs(a.workdir)
            agents.append(a)
            a.start()
            a.wait(a.ready, "ready (empty state)", 60)
            c0 = a.cpu()
            t0, t1 = apply_chunks(a, chunks)
            cpu = a.cpu() - c0
            rss = a.rss()
            res["apply"] = dict(objects=expect["objects"], seconds=round(t1 - t0, 2),
                                objects_per_s=round(expect["objects"] / (t1 - t0)), format=args.format,
                                agent_cpu_s=round(cpu, 2), objects_per_agent_cpu_s=round(expect["objects"] / max(cpu, 0.01)),
                                rss_mb=round(rss.get("VmRSS", 0), 1), peak_mb=round(rss.get("VmHWM", 0), 1))
            log(f"[{label}] apply: {res['apply']}")
            ts = status_does_not_claim_early(a, expect, res)
            detail = {}
            tk = wait_kernel(a, expect, args.timeout, detail)
            res["in_sync"] = dict(status_from_apply_end_s=round(ts - t1, 2), kernel_check_s=detail.get("check_s"), kernel_from_apply_start_s=round(tk - t0, 2), kernel_from_apply_end_s=round(tk - t1, 2),
                                  agent_cpu_s=round(a.cpu() - c0, 2))
            res["status"] = status_truth(a, expect)
            rss = a.rss()
            res["in_sync"].update(rss_mb=round(rss.get("VmRSS", 0), 1), peak_mb=round(rss.get("VmHWM", 0), 1))
            log(f"[{label}] in-sync: {res['in_sync']}")
            c1 = a.cpu()
            res["events"] = event_latencies(a, cluster, args.events, args.perf, label)
            # Beside the wall times: what the whole events phase cost the agent itself.
            res["events"]["agent_cpu_s"] = round(a.cpu() - c1, 2)
            log(f"[{label}] events: {res['events']}")
            try:
                wait_kernel(a, expect, 60)
            except RuntimeError as e:
                check(False, f"kernel back at the desired state after the events: {e}")
            res["restart"] = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in restart(a, expect).items()}
            log(f"[{label}] restart: {res['restart']}")
            status_truth(a, expect)
            res["stop_s"] = round(a.stop()[0], 3)
            # The next part starts from a clean kernel: a fresh namespace.
            node.delete()
            node = Node(label + "e")
        if args.source in ("etcd", "both"):
            etcd = start_etcd(node, workdir)
            a = Agent(binary, node, os.path.join(workdir, "etcd-agent"), source="etcd",
                      extra=["--etcd-endpoints", "http://127.0.0.1:2379"])
            os.makedirs(a.workdir)
            agents.append(a)
            a.start()
            a.wait(a.ready, "ready (etcd, empty)", 60)
            t0, t1 = apply_chunks(a, chunks)
            tk = wait_kernel(a, expect, args.timeout)
            rss = a.rss()
            res["etcd_apply"] = dict(seconds=round(t1 - t0, 2), objects_per_s=round(expect["objects"] / (t1 - t0)),
                                     kernel_from_apply_start_s=round(tk - t0, 2),
                                     rss_mb=round(rss.get("VmRSS", 0), 1), peak_mb=round(rss.get("VmHWM", 0), 1))
            log(f"[{label}] etcd apply: {res['etcd_apply']}")
            a.stop()
            # First sync: a fresh agent with empty state in a fresh namespace, etcd full.
            t = time.monotonic()
            r = node.run(["sh", "-c", "etcdctl --endpoints http://127.0.0.1:2379 get --prefix /nodenet/objects/ | wc -c"], timeout=600)
            ref = time.monotonic() - t
            # A clean kernel and empty state in the same namespace (etcd stays on its loopback).
            for cmd in (["ip", "route", "flush", "table", "main", "proto", "78"], ["ip", "nexthop", "flush"], ["nft", "delete", "table", "ip", "nodenet"],
                        ["nft", "delete", "table", "ip6", "nodenet"]):
                node.run(cmd, ok=False)
            left = kernel_state(node)[0]
            check(not left, f"kernel clean before the first sync ({len(left)} routes left: {list(left)[:3]})")
            b = Agent(binary, node, os.path.join(workdir, "etcd-fresh"), source="etcd",
                      extra=["--etcd-endpoints", "http://127.0.0.1:2379"])
            os.makedirs(b.workdir)
            agents.append(b)
            b.start()
            perf = None
            if args.perf:
                # Attached to the agent's pid at once (nsenter execs it): the first sync's profile.
                perf = subprocess.Popen(["perf", "record", "-g", "-F", "499", "-p", str(b.proc.pid), "-o",
                                         os.path.join(args.perf, f"first-sync-{label}.perf.data")],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            b.wait(b.ready, "ready (etcd first sync)", args.timeout, interval=0.02)
            tr = time.monotonic() - b.started
            tk = wait_kernel(b, expect, args.timeout) - b.started
            if perf:
                perf.send_signal(signal.SIGINT)
                perf.wait(timeout=120)
            bcpu = b.cpu()
            rss = b.rss()
            res["etcd_first_sync"] = dict(ready_s=round(tr, 2), kernel_s=round(tk, 2), etcdctl_get_prefix_s=round(ref, 2),
                                          ratio_ready=round(tr / ref, 2), bytes=int(r.stdout.strip() or 0), agent_cpu_s=round(bcpu, 2),
                                          rss_mb=round(rss.get("VmRSS", 0), 1), peak_mb=round(rss.get("VmHWM", 0), 1))
            log(f"[{label}] etcd first sync: {res['etcd_first_sync']}")
            b.stop()
    finally:
        for a in agents:
            a.kill()
        if etcd:
            etcd.kill()
            etcd.wait()
        node.delete()
        if args.keep:
            log(f"[{label}] kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="tenth", choices=sorted(gen.SIZES))
    ap.add_argument("--bin", default=os.path.join(HERE, "../../.build/release/nodenet"))
    ap.add_argument("--baseline", help="a second nodenet binary measured in the same run (e.g. the previous commit's)")
    ap.add_argument("--source", default="both", choices=["embedded", "etcd", "both"])
    ap.add_argument("--format", default="json", choices=["json", "yaml"])
    ap.add_argument("--events", type=int, default=20)
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--check", action="store_true", help="exit 1 when a correctness check fails")
    ap.add_argument("--keep", action="store_true", help="keep the work directories")
    ap.add_argument("--perf", metavar="DIR", help="record the events phase and the etcd first sync with perf (perf record -g) into DIR")
    args = ap.parse_args()
    global args_timeout
    args_timeout = args.timeout
    if os.geteuid() != 0:
        log("run as root (creates network namespaces)")
        return 2
    # Started from a test runner, this process may inherit blocked or ignored signals, and its
    # children (agents, monitors) with it: a SIGTERM to them would then do nothing and the
    # harness would wait forever. Give every child a clean mask and default handlers.
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
        if signal.getsignal(sig) == signal.SIG_IGN:
            signal.signal(sig, signal.SIG_DFL)
    cleanup_leftovers()
    cluster = gen.Cluster(args.size)
    expect = cluster.expect()
    gendir = tempfile.mkdtemp(prefix="nodenet-scale-gen-")
    try:
        n, files = gen.write_chunks(cluster, gendir, args.format, 5000)
        chunks = sorted(os.path.join(gendir, f) for f in os.listdir(gendir))
        log(f"generated {n} objects in {files} {args.format} files ({args.size})")
        results = {"size": args.size, "params": cluster.p}
        binaries = [("new", os.path.abspath(args.bin))]
        if args.baseline:
            binaries.append(("base", os.path.abspath(args.baseline)))
        for label, binary in binaries:
            results[label] = run_one(binary, label, args, cluster, expect, chunks)
        results["failures"] = failures
        print(json.dumps(results, indent=1))
    finally:
        shutil.rmtree(gendir, ignore_errors=True)
    if failures:
        log(f"{len(failures)} checks failed")
    return 1 if (args.check and failures) else 0


if __name__ == "__main__":
    sys.exit(main())
