#!/usr/bin/env bash
# Fetch a Consul agent binary for the discovery tests, printing its path on stdout.
#
# Debian 12 has no consul package, but Debian 11 (bullseye) main carries consul 1.8.7. This
# downloads that .deb from the mirror the machine's apt already uses, with a private apt state
# (the system's sources and lists are untouched), and unpacks it under DEST (default
# ~/.cache/meshcore/consul). Prints nothing and exits non-zero when it cannot be had.
set -euo pipefail
DEST=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/meshcore/consul}
BIN="$DEST/pkg/usr/bin/consul"
if [ -x "$BIN" ] && "$BIN" version >/dev/null 2>&1; then
    echo "$BIN"
    exit 0
fi
command -v apt-get >/dev/null 2>&1 || { echo "get-consul: apt-get not found" >&2; exit 1; }
A=$(mktemp -d)
trap 'rm -rf "$A"' EXIT
chmod 755 "$A"
mkdir -p "$A/lists/partial" "$A/cache/archives/partial" "$A/parts.d"
# The mirror URI from the machine's own apt configuration (sources.list or deb822 .sources).
MIRROR=$(apt-get indextargets --format '$(REPO_URI)' 'Label: Debian' 2>/dev/null | grep -v security | head -n1 || true)
[ -n "$MIRROR" ] || MIRROR=$(apt-get indextargets --format '$(REPO_URI)' 2>/dev/null | grep -v security | head -n1 || true)
[ -n "$MIRROR" ] || { echo "get-consul: no Debian mirror in the apt configuration" >&2; exit 1; }
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
echo "deb [signed-by=$KEYRING] $MIRROR bullseye main" > "$A/sources.list"
O=(-o Dir::Etc::sourcelist="$A/sources.list" -o Dir::Etc::sourceparts="$A/parts.d"
   -o Dir::State::Lists="$A/lists" -o Dir::Cache="$A/cache" -o APT::Sandbox::User=root)
apt-get "${O[@]}" -qq update >&2
(cd "$A" && apt-get "${O[@]}" -qq download consul >&2)
rm -rf "$DEST/pkg"
mkdir -p "$DEST"
dpkg-deb -x "$A"/consul_*.deb "$DEST/pkg"
"$BIN" version >&2
echo "$BIN"
