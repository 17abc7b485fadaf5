# Shared by agent-bench.sh and dataplane-pps.sh (sourced): the benchmark's node topology and its
# connection-rate client. Root; everything lives in the namespaces the caller names.

ep() { python3 -c "n=$1; print(f'10.{128 + n // 65536}.{(n // 256) % 256}.{n % 256}')"; }

# topology N C V INDEX...: node N, client C behind c0 (a pod address), server V behind s0 holding the
# endpoint addresses `ep INDEX` (the addressing of ../shared/bench/gen-kube-proxy-ruleset.py), with
# a forking accept loop on 8080.
topology() {
  local N=$1 C=$2 V=$3; shift 3
  ip netns add $N; ip netns add $C; ip netns add $V
  for x in $N $C $V; do ip -n $x link set lo up; done
  ip link add c0 netns $N type veth peer name eth0 netns $C
  ip link add s0 netns $N type veth peer name eth0 netns $V
  ip -n $N addr add 10.244.200.1/24 dev c0; ip -n $N link set c0 up
  ip -n $N addr add 10.127.255.254/32 dev s0; ip -n $N link set s0 up; ip -n $N route add 10.128.0.0/12 dev s0
  ip -n $C addr add 10.244.200.2/24 dev eth0; ip -n $C link set eth0 up; ip -n $C route add default via 10.244.200.1
  ip -n $V link set eth0 up; ip -n $V route add 10.127.255.254 dev eth0; ip -n $V route add default via 10.127.255.254
  for k in "$@"; do ip -n $V addr add "$(ep $k)/32" dev eth0; done
  ip netns exec $N sysctl -qw net.ipv4.ip_forward=1
  ip netns exec $V python3 -c '
import socket, os
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("0.0.0.0", 8080)); s.listen(4096)
for _ in range(3):
    if os.fork() == 0: break
while True:
    c, _ = s.accept(); c.close()' &
}

# connection_rate C VIP SECONDS PARALLEL: new TCP connections per second from C through VIP:80
# (PARALLEL client processes for SECONDS; connections closed with RST). Prints the bare number.
connection_rate() {
  ip netns exec $1 python3 -c '
import socket, time, sys, os
vip, secs, par = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
r, w = os.pipe()
for p in range(par):
    if os.fork() == 0:
        n = 0; end = time.time() + secs
        while time.time() < end:
            s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            try: s.connect((vip, 80)); n += 1
            except OSError: pass
            s.close()
        os.write(w, b"%d\n" % n); os._exit(0)
for p in range(par): os.wait()
os.close(w)
print("%.0f" % (sum(int(x) for x in os.read(r, 1 << 16).split()) / secs))' "$2" "$3" "$4"
}
