#!/usr/bin/env bash
# Builds dist/nodenet_<version>_<arch>.deb from the release binary with dpkg-deb.
# Usage: [NODENET_BUILD_DIR=DIR] packaging/build-deb.sh [--binary PATH]   (default: builds the
#   release binaries first, in DIR (default .build); with --binary, nodenet-cni is taken from the
#   same directory)
# Prints the path of the .deb on stdout (build output goes to stderr).
# Debian policy without debhelper: Depends from dpkg-shlibdeps, Installed-Size, md5sums, the
# copyright file with the licenses and versions of the statically linked Swift packages (read from
# this build's Package.resolved and checkouts: packaging/copyright.py), the changelog
# (packaging/changelog, whose top version must be the binary's), man pages generated from the
# commands' own help by swift-argument-parser's generate-manual, and lintian overrides that say
# why (packaging/lintian-overrides). LintianTests checks the result has no lintian error.
# The files are install.sh's layout, including both plugin links: /opt/cni/bin/nodenet (upstream
# runtimes) and /usr/lib/cni/nodenet (Debian's containerd and podman), each -> /usr/bin/nodenet-cni.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
binary=""
[ "${1:-}" = "--binary" ] && binary=$2
# The build directory (swift build --scratch-path): $NODENET_BUILD_DIR, default .build. A separate
# one (e.g. .build-rel) lets the release build run while tests use the debug build in .build.
scratch=${NODENET_BUILD_DIR:-.build}
release=(swift build -c release --static-swift-stdlib --scratch-path "$scratch")
if [ -z "$binary" ]; then
  "${release[@]}" --product nodenet >&2
  "${release[@]}" --product nodenet-cni >&2
  binary="$here/$scratch/release/nodenet"
fi
# The package carries no Swift runtime: a binary that loads it from the build machine's toolchain
# (built without --static-swift-stdlib) would install and then fail to start on every node.
for b in "$binary" "$(dirname "$binary")/nodenet-cni"; do
  # ldd's output read whole first: `ldd | grep -q` under pipefail fails whenever grep exits at the
  # first match before ldd has written the rest (SIGPIPE), and the check would pass a bad binary.
  deps=$(ldd "$b" 2>/dev/null || true)
  if grep -q 'libswift' <<<"$deps"; then
    echo "build-deb.sh: $b loads the Swift runtime from $(ldd "$b" | awk '/libswiftCore/ {print $3}'); build it with: swift build -c release --static-swift-stdlib" >&2
    exit 1
  fi
done
version=$("$binary" version | awk '{print $2}')
arch=$(dpkg --print-architecture)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
chmod 0755 "$stage"
packaging/install.sh --destdir "$stage" --binary "$binary"
for link in opt/cni/bin/nodenet usr/lib/cni/nodenet; do
  [ "$(readlink "$stage/$link")" = /usr/bin/nodenet-cni ] || { echo "build-deb.sh: /$link is not a link to /usr/bin/nodenet-cni" >&2; exit 1; }
done
strip --strip-unneeded --remove-section=.comment --remove-section=.note "$stage/usr/bin/nodenet" "$stage/usr/bin/nodenet-cni"
changelog_version=$(dpkg-parsechangelog -l packaging/changelog -S Version)
[ "$changelog_version" = "$version" ] || { echo "build-deb.sh: packaging/changelog is at $changelog_version, the binary at $version: add a changelog entry" >&2; exit 1; }

# Documentation: copyright, changelog, man pages.
doc="$stage/usr/share/doc/nodenet"
install -d -m 0755 "$doc" "$stage/usr/share/man/man1" "$stage/usr/share/lintian/overrides"
[ -f Package.resolved ] || { echo "build-deb.sh: no Package.resolved: run swift build first (the copyright file lists the versions it resolved)" >&2; exit 1; }
swift_version=$(swift --version 2>/dev/null | sed -n 's/.*Swift version \([0-9.]*\).*/\1/p' | head -1)
packaging/copyright.py Package.resolved "$scratch/checkouts" "${swift_version:-unknown}" > "$doc/copyright"
gzip -9n < packaging/changelog > "$doc/changelog.gz"
# swift-argument-parser's generate-manual (the tool behind its generate-manual plugin, built from
# the resolved checkout: no network) reads `nodenet --experimental-dump-help`: one page per command.
"${release[@]}" --product generate-manual >&2
man=$(mktemp -d)
"$scratch/release/generate-manual" "$binary" --multi-page --output-directory "$man" \
  --authors "nodenet developers<dev@nodenet.invalid>" --date "$(dpkg-parsechangelog -l packaging/changelog -S Date | xargs -I{} date -u -d {} +%Y-%m-%d)" >&2
# One page per subcommand, named as Debian names them (nodenet-agent(1), as git-commit(1)):
# generate-manual writes nodenet.agent.1 with the NAME "nodenet agent", which whatis cannot
# index; the synopsis keeps the command as typed.
for page in "$man"/nodenet.*.1; do
  sub=$(basename "$page" .1); sub=${sub#nodenet.}
  upper=$(echo "$sub" | tr '[:lower:]' '[:upper:]')
  sed -e "s/^\.Dt NODENET\.$upper /.Dt NODENET-$upper /" \
      -e "0,/^\.Nm \"nodenet $sub\"\$/s//.Nm nodenet-$sub/" \
      -e "s/^\.Nm\$/.Nm \"nodenet $sub\"/" "$page" > "$man/nodenet-$sub.1"
  rm "$page"
done
cp packaging/nodenet-cni.1 "$man/"
for page in "$man"/*.1; do gzip -9n < "$page" > "$stage/usr/share/man/man1/$(basename "$page").gz"; done
rm -rf "$man"
install -m 0644 packaging/lintian-overrides "$stage/usr/share/lintian/overrides/nodenet"
find "$stage/usr/share" -type f -exec chmod 0644 {} +

mkdir -p "$stage/DEBIAN"
# Shared libraries the agent links (libc6, libmnl0, libsystemd0, libsqlite3-0, ...) with the
# minimum versions its symbols need, as dpkg-shlibdeps computes them (nodenet-cni is static).
shlib=$(mktemp -d)
mkdir -p "$shlib/debian"
printf 'Source: nodenet\n\nPackage: nodenet\nArchitecture: any\n' > "$shlib/debian/control"
shlibs=$(cd "$shlib" && dpkg-shlibdeps -O "$stage/usr/bin/nodenet" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
rm -rf "$shlib"
[ -n "$shlibs" ] || { echo "build-deb.sh: dpkg-shlibdeps found no dependencies for usr/bin/nodenet" >&2; exit 1; }
installed_size=$(du -s -k --apparent-size "$stage" | cut -f1)
# procps: /bin/kill, which the unit's ExecReload runs (SIGHUP reloads the configuration).
cat > "$stage/DEBIAN/control" <<CONTROL
Package: nodenet
Version: $version
Architecture: $arch
Maintainer: nodenet developers <dev@nodenet.invalid>
Installed-Size: $installed_size
Depends: $shlibs, iproute2, procps
Recommends: nftables, conntrack
Section: net
Priority: optional
Description: Kubernetes node networking in one agent
 nodenet replaces a CNI plugin with its IPAM, node subnet routing, kube-proxy
 and cluster DNS with one agent per node, sharing one cluster state store.
CONTROL
# Not the CNI conflist: the agent writes it once it is ready (a conflist present before would
# send pods to a plugin that cannot serve them yet), and `nodenet reset` removes it.
printf '/etc/nodenet/config.yaml\n/etc/iproute2/rt_protos.d/nodenet.conf\n' > "$stage/DEBIAN/conffiles"
cat > "$stage/DEBIAN/postinst" <<'POSTINST'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
POSTINST
# Removal. prerm "remove" (also the first step of a purge; never on upgrade): stop and disable
# the agent, then take its dataplane off the node with `nodenet reset --keep-state`: without the
# agent and the plugin nothing would keep the bridge, routes and service rules true, and stale
# service rules would steer traffic to gone endpoints. This has to happen in prerm because postrm
# runs after dpkg removed /usr/bin/nodenet. postrm "purge" then deletes the state and run
# directories (stored objects, addresses), which need no binary.
cat > "$stage/DEBIAN/prerm" <<'PRERM'
#!/bin/sh
set -e
if [ "$1" = remove ]; then
  if [ -d /run/systemd/system ]; then
    systemctl disable --now nodenet.service >/dev/null 2>&1 || systemctl stop nodenet.service || true
  else
    systemctl disable nodenet.service >/dev/null 2>&1 || true
  fi
  /usr/bin/nodenet reset --keep-state || echo "nodenet: reset failed; see above, or run nodenet reset again before removing" >&2
fi
PRERM
cat > "$stage/DEBIAN/postrm" <<'POSTRM'
#!/bin/sh
set -e
case "$1" in
  remove)
    if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi ;;
  purge)
    rm -rf /var/lib/nodenet /run/nodenet
    rm -f /etc/cni/net.d/10-nodenet.conflist
    if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi ;;
esac
POSTRM
chmod 0755 "$stage/DEBIAN/postinst" "$stage/DEBIAN/prerm" "$stage/DEBIAN/postrm"
(cd "$stage" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z | xargs -0 md5sum) > "$stage/DEBIAN/md5sums"
chmod 0644 "$stage/DEBIAN/md5sums" "$stage/DEBIAN/control" "$stage/DEBIAN/conffiles"
mkdir -p dist
out="dist/nodenet_${version}_${arch}.deb"
dpkg-deb --root-owner-group --build "$stage" "$out" >/dev/null
echo "$out"
