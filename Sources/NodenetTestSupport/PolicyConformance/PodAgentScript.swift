/// The program each conformance pod runs (python3 from Debian, inside the pod's netns): the
/// upstream model's servers and the prober, in one process per pod.
///
/// Why one process and not a process per probe: a case probes 9x8 pairs x 2 modes x 4 port/
/// protocols; exec'ing a client in a namespace per probe (`ip netns exec socat ...`) costs tens
/// of milliseconds each on this machine, minutes per case. Each pod's program serves TCP and
/// UDP (and SCTP when the kernel has it) on the model's ports, and takes probe batches on a
/// unix socket in the test's directory (a path socket is reachable from any network
/// namespace), running the whole batch at once with a per-probe timeout.
///
/// Servers: a stream server answers each connection with "<ns>/<pod>\n" and closes; a datagram
/// server answers each datagram with the same line. A probe is connected only when that line
/// comes back, so a Service that delivered to the wrong pod shows as a mismatch, not a pass.
///
/// Control protocol: one JSON line in, one JSON line out.
/// - {"op":"status"} -> {"name":..., "serving":["TCP/80",...]}
/// - {"op":"probe","probes":[{"host","port","proto","timeout"}]} -> {"results":["ok:x/b"|"error:..."]}
/// - {"op":"capture-start","ifname":"eth0"}: count incoming IPv4 packets per source address
///   (AF_PACKET, before netfilter: what tcpdump would see) from now on; ifname "" captures on
///   every interface, including one that a CNI ADD creates later.
/// - {"op":"capture-count"} -> {"counts":{"10.244.1.7": 12}}
/// - {"op":"flood","host","port","seconds"}: UDP datagrams and TCP connection attempts to
///   host:port for that long -> {"sent","failed","connectAttempts"}
enum PodAgentScript {
    static let server = #"""
import json, os, socket, sys, threading, time
from concurrent.futures import ThreadPoolExecutor

NAME, CTL, PORTS = sys.argv[1], sys.argv[2], [int(p) for p in sys.argv[3].split(",")]
REPLY = (NAME + "\n").encode()
KINDS = {"TCP": (socket.SOCK_STREAM, 0), "UDP": (socket.SOCK_DGRAM, 0), "SCTP": (socket.SOCK_STREAM, 132)}
serving = []

def serve_stream(s):
    while True:
        c, _ = s.accept()
        try:
            c.sendall(REPLY)
        except OSError:
            pass
        c.close()

def serve_datagram(s):
    while True:
        _, peer = s.recvfrom(2048)
        try:
            s.sendto(REPLY, peer)
        except OSError:
            pass

for port in PORTS:
    for proto, (kind, number) in KINDS.items():
        try:
            s = socket.socket(socket.AF_INET, kind, number)
        except OSError:
            continue  # no SCTP sockets in this kernel
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", port))
        if kind == socket.SOCK_STREAM:
            s.listen(512)
            threading.Thread(target=serve_stream, args=(s,), daemon=True).start()
        else:
            threading.Thread(target=serve_datagram, args=(s,), daemon=True).start()
        serving.append("%s/%d" % (proto, port))

def probe(p):
    kind, number = KINDS[p["proto"]]
    timeout = float(p["timeout"])
    try:
        s = socket.socket(socket.AF_INET, kind, number)
    except OSError as e:
        return "error:socket " + str(e.strerror)
    deadline = time.monotonic() + timeout
    try:
        s.settimeout(timeout)
        s.connect((p["host"], int(p["port"])))
        if kind == socket.SOCK_DGRAM:
            # Two sends half a timeout apart: one lost datagram (a neighbour entry being
            # resolved) is not a blocked flow.
            data = None
            for attempt in range(2):
                s.send(b"probe\n")
                s.settimeout(max(0.01, timeout / 2 if attempt == 0 else deadline - time.monotonic()))
                try:
                    data = s.recv(256)
                    break
                except socket.timeout:
                    continue
            if data is None:
                return "error:timeout"
        else:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            data = s.recv(256)
        if not data:
            return "error:closed without a reply"
        return "ok:" + data.decode(errors="replace").strip()
    except socket.timeout:
        return "error:timeout"
    except OSError as e:
        return "error:" + str(e.strerror or e)
    finally:
        s.close()

counts = {}
counts_lock = threading.Lock()
capture_started = [False]

def capture(ifname, bound):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0800))
    if ifname:
        s.bind((ifname, 0x0800))  # else every interface, also ones that appear later
    bound.set()  # packets count from here on
    while True:
        data, addr = s.recvfrom(65535)
        if addr[2] == socket.PACKET_OUTGOING or len(data) < 20:
            continue
        src = socket.inet_ntoa(data[12:16])
        with counts_lock:
            counts[src] = counts.get(src, 0) + 1

\#(floodFunction)
def handle(c):
    with c:
        f = c.makefile("rwb")
        req = json.loads(f.readline())
        op = req.get("op")
        if op == "probe":
            probes = req["probes"]
            if probes:
                with ThreadPoolExecutor(max_workers=min(len(probes), 256)) as ex:
                    out = {"results": list(ex.map(probe, probes))}
            else:
                out = {"results": []}
        elif op == "status":
            out = {"name": NAME, "serving": serving}
        elif op == "capture-start":
            with counts_lock:
                counts.clear()
            if not capture_started[0]:
                capture_started[0] = True
                bound = threading.Event()
                threading.Thread(target=capture, args=(req.get("ifname", "eth0"), bound), daemon=True).start()
                bound.wait(5)
            out = {"ok": True}
        elif op == "flood":
            out = flood(req["host"], int(req["port"]), float(req["seconds"]))
        elif op == "capture-count":
            with counts_lock:
                out = {"counts": dict(counts)}
        else:
            out = {"error": "unknown op %r" % op}
        f.write((json.dumps(out) + "\n").encode())
        f.flush()

try:
    os.unlink(CTL)
except FileNotFoundError:
    pass
ctl = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
ctl.bind(CTL + ".tmp")
ctl.listen(64)
os.rename(CTL + ".tmp", CTL)  # the path appears only once the servers above are bound
while True:
    conn, _ = ctl.accept()
    threading.Thread(target=handle, args=(conn,), daemon=True).start()
"""#

    /// The sender for the first-packet check: started in a pod's netns before its CNI ADD,
    /// blocked on a FIFO until the test opens it the moment ADD returns, then sends UDP
    /// datagrams (and a TCP connection attempt every 10 ms) to the peer as fast as it can for
    /// the given time. Prints a JSON summary.
    /// UDP datagrams as fast as possible and a TCP connection attempt every 10 ms, for
    /// `seconds`; the summary says when the first datagram left. Shared by the pod agent's
    /// `flood` operation and the first-packet sender.
    static let floodFunction = #"""
def flood(host, port, seconds):
    t0 = time.monotonic()
    sent = failed = connects = 0
    first = None
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    last_tcp = 0.0
    while time.monotonic() - t0 < seconds:
        try:
            u.sendto(b"first-packet", (host, port))
            sent += 1
            if first is None:
                first = time.monotonic() - t0
        except OSError:
            failed += 1
        now = time.monotonic()
        if now - last_tcp > 0.01:
            last_tcp = now
            t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            t.setblocking(False)
            try:
                t.connect_ex((host, port))
                connects += 1
            finally:
                t.close()
        time.sleep(0.0002)
    u.close()
    return {"sent": sent, "failed": failed, "connectAttempts": connects, "firstSendSeconds": first}
"""#

    static let sender = #"""
import json, socket, sys, time
\#(floodFunction)
fifo, host, port, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
with open(fifo, "rb") as f:
    f.read(1)
print(json.dumps(flood(host, port, seconds)))
"""#
}
