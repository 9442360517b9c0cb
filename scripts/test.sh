#!/usr/bin/env bash
# The whole test suite, as the README's `make test` runs it. Installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
step() { printf '\n==> %s\n' "$*"; }

# System packages: tcpdump makes a real capture on loopback for the pcap reader tests; knot is
# the DNS server (knotd, knotc in /usr/sbin) and etcd-server the etcd (3.4) that the discovery
# tests start on loopback; etcdctl (etcd-client) writes keys the way Go users do.
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    missing=()
    command -v tcpdump >/dev/null 2>&1 || missing+=(tcpdump)
    PATH="$PATH:/usr/sbin" command -v knotd >/dev/null 2>&1 || missing+=(knot)
    command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
    command -v etcdctl >/dev/null 2>&1 || missing+=(etcd-client)
    if [ ${#missing[@]} -gt 0 ]; then
        step "apt-get install ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            -o DPkg::Lock::Timeout=120 "${missing[@]}"
    fi
fi

# Consul is not in Debian 12: scripts/get-consul.sh fetches Debian 11's consul 1.8.7 package
# from the machine's own mirror. The Consul tests find it through MESHCORE_CONSUL_BIN; outside CI
# they skip (saying why) when it cannot be had, under CI they fail.
if [ -z "${MESHCORE_CONSUL_BIN:-}" ] && ! command -v consul >/dev/null 2>&1; then
    step "fetch consul (Debian 11 package)"
    if bin=$(bash scripts/get-consul.sh); then
        export MESHCORE_CONSUL_BIN="$bin"
    else
        echo "consul could not be fetched; its tests will skip (or fail under CI)"
    fi
fi

step "pip install .[test] (builds the extension)"
"$PYTHON" -m pip install -q --disable-pip-version-check ".[test]"

step "cargo fmt --check"
cargo fmt --all -- --check
cargo fmt --manifest-path rust/fuzz/Cargo.toml -- --check
step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets -- -D warnings
step "cargo test (core)"
cargo test --workspace

step "ruff"
"$PYTHON" -m ruff check python tests benches examples scripts
"$PYTHON" -m ruff format --check python tests benches examples scripts
step "mypy"
"$PYTHON" -m mypy
step "stubtest"
"$PYTHON" -m mypy.stubtest meshcore._meshcore --allowlist .mypy-stubtest-allowlist

step "fuzz (bounded)"
FUZZ_SECONDS=${FUZZ_SECONDS:-25} bash scripts/fuzz.sh

step "pytest"
# Run from the tests directory so the installed package, not the source tree, is imported.
(cd tests && "$PYTHON" -m pytest -q -p no:cacheprovider)
