#!/bin/sh
# The system programs the test suite drives for real: ZooKeeper, network namespaces and
# nftables (partitions), libfaketime (clock jumps), Chromium (the planner board), systemd
# (systemd-analyze verify). Installs whatever is missing from Debian's packages when run as
# root; otherwise the tests that need a missing program say so and skip.
set -e
missing=""
[ -x /usr/share/zookeeper/bin/zkServer.sh ] || missing="$missing zookeeper"
command -v nft >/dev/null 2>&1 || missing="$missing nftables"
command -v ip >/dev/null 2>&1 || missing="$missing iproute2"
[ -e /usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1 ] || [ -n "$(ls /usr/lib/*/faketime/libfaketime.so.1 2>/dev/null)" ] || missing="$missing faketime"
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
command -v systemd-analyze >/dev/null 2>&1 || missing="$missing systemd"
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "test-deps: missing$missing (not root or no apt-get): the tests needing them will skip" >&2
    exit 0
fi
echo "test-deps: installing$missing" >&2
apt-get update -qq >/dev/null 2>&1 || true
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null 2>&1 || \
    echo "test-deps: could not install$missing; the tests needing them will skip" >&2
