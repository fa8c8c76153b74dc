#!/bin/sh
# Runs stock h2load with the client-certificate shim preloaded.
#
#   H2LOAD_CLIENT_CERT=client.pem H2LOAD_CLIENT_KEY=client.key \
#     loadtest/h2load-client-cert/run.sh --h1 -n 2000 -c 10 https://localhost:8443/
#
# Every argument goes to h2load unchanged. The shim is (re)built with cc when it is missing or
# older than client_cert_shim.c, into $H2LOAD_SHIM_DIR (default: a per-user directory under
# ${TMPDIR:-/tmp}). Without H2LOAD_CLIENT_CERT/H2LOAD_CLIENT_KEY h2load runs as usual, without
# a client certificate. See README.md.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
src="$here/client_cert_shim.c"
out_dir=${H2LOAD_SHIM_DIR:-${TMPDIR:-/tmp}/portcullis-h2load-shim-$(id -u)}
shim="$out_dir/client_cert_shim.so"

if ! command -v h2load >/dev/null 2>&1; then
    echo "run.sh: h2load not found: install it (Debian/Ubuntu: apt-get install nghttp2-client)" >&2
    exit 127
fi

if [ ! -f "$shim" ] || [ "$src" -nt "$shim" ]; then
    if ! command -v "${CC:-cc}" >/dev/null 2>&1; then
        echo "run.sh: ${CC:-cc} not found: install a C compiler (Debian/Ubuntu: apt-get install gcc)" >&2
        exit 127
    fi
    mkdir -p "$out_dir"
    tmp="$shim.$$.tmp"
    # Build to a temporary name and rename, so concurrent runs never load a half-written file.
    if ! "${CC:-cc}" -shared -fPIC -O2 -o "$tmp" "$src" -ldl; then
        rm -f "$tmp"
        echo "run.sh: building the shim failed (OpenSSL headers: apt-get install libssl-dev)" >&2
        exit 1
    fi
    mv -f "$tmp" "$shim"
fi

LD_PRELOAD="$shim${LD_PRELOAD:+:$LD_PRELOAD}" exec h2load "$@"
