#!/usr/bin/env bash
# Prints the path of a cached Debian 12 root filesystem tarball with systemd as init, for
# booting with systemd-nspawn in PackageSystemdTests; builds it first when it is missing.
#   packaging/test/rootfs.sh DEB
# The tarball holds debootstrap's minbase with systemd, systemd-sysv, dbus and iproute2 (a node has
# `ip`; the test configures its uplink with it before nodenet is installed), plus the .deb's
# Depends and Recommends downloaded into the apt cache (with the package lists), so
# `apt-get install ./nodenet_*.deb` works inside a container that has no network. Its name
# carries a hash of that dependency list: a package with other dependencies gets a new tarball.
# Cache: $NODENET_TEST_CACHE, default /var/cache/nodenet-test (about 250 MB, 1-3 minutes to build).
set -euo pipefail
deb=${1:?usage: rootfs.sh DEB}
cache=${NODENET_TEST_CACHE:-/var/cache/nodenet-test}
for tool in debootstrap dpkg-deb; do
  command -v $tool >/dev/null || { echo "rootfs.sh: $tool is missing (scripts/setup.sh installs it)" >&2; exit 3; }
done
# The Debian mirror this machine uses (deb822 or one-line sources), else the default.
mirror=$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
[ -n "$mirror" ] || mirror=$(awk '$1 == "deb" && $3 == "bookworm" {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
[ -n "$mirror" ] || mirror=http://deb.debian.org/debian
# Package names of Depends and Recommends, without versions or alternatives beyond the first.
deps=$(dpkg-deb -f "$deb" Depends Recommends | sed -e 's/^[A-Za-z]*: //' | tr ',' '\n' \
       | sed -e 's/|.*//' -e 's/(.*)//' -e 's/[[:space:]]//g' | grep -v '^$' | sort -u | tr '\n' ' ')
key=$(printf 'v5 %s %s' "$mirror" "$deps" | sha256sum | cut -c1-12)
tarball="$cache/bookworm-systemd-$key.tar"
if [ -s "$tarball" ]; then echo "$tarball"; exit 0; fi

mkdir -p "$cache"
# One builder at a time; a second caller waits and then finds the tarball.
exec 9>"$cache/.lock"
flock -w 600 9 || { echo "rootfs.sh: $cache/.lock held for 10 minutes" >&2; exit 1; }
if [ -s "$tarball" ]; then echo "$tarball"; exit 0; fi
dir=$(mktemp -d "$cache/build.XXXXXX")
chmod 0755 "$dir"   # the container's /: mktemp's 0700 would lock every non-root daemon out
trap 'umount -R "$dir/proc" 2>/dev/null || true; rm -rf "$dir"' EXIT
echo "rootfs.sh: debootstrap bookworm from $mirror into $dir (deps: $deps)" >&2
debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,iproute2 bookworm "$dir" "$mirror" >&2
# Package lists and the dependencies' .debs (with what they recommend, as apt-get install pulls
# it in), for an offline `apt-get install ./nodenet_*.deb`.
cp /etc/resolv.conf "$dir/etc/resolv.conf"
chroot "$dir" apt-get clean >&2   # debootstrap's own .debs: installed already
chroot "$dir" apt-get update -q >&2
# shellcheck disable=SC2086
chroot "$dir" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --download-only $deps >&2
# Caches apt rebuilds by itself, and translations: a third of the size.
rm -f "$dir"/var/cache/apt/*.bin "$dir"/var/lib/apt/lists/*_i18n_Translation-*
# The container must never ask the machine's resolver: no resolv.conf inside.
rm -f "$dir/etc/resolv.conf"
echo nodenet-test > "$dir/etc/hostname"
tar -C "$dir" -cf "$tarball.tmp" .
mv "$tarball.tmp" "$tarball"
echo "$tarball"
