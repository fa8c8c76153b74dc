#!/usr/bin/env bash
# The Debian package, end to end, on this machine (as root, as CI runs it): build it with
# `cargo deb`, install it with dpkg, check what it installed (files, owners, modes, the
# conffile, the system user, the unit with `systemd-analyze verify` and `security`), run
# `portcullis check` on the shipped example once the demo's certificates are in place (and
# see it warn about a world-readable key), then remove and purge it and check that nothing is
# left. Maintainer scripts run without systemd here when PID 1 is not systemd (a container).
#
#   dataplane/debian/test-package.sh            # needs cargo-deb, the workspace's debug build
#                                                # (for `portcullis demo`), dpkg, systemd-analyze
#
# PACKAGE_PROFILE picks the cargo profile of the packaged binary: `release` (the default, what
# the README builds: about 11 minutes from scratch on 2 cores) or `dev` (what CI uses: it
# reuses the test build and takes about 30 s; the package's files, scripts and unit are the
# same).
set -euo pipefail
cd "$(dirname "$0")/../.."
target="${CARGO_TARGET_DIR:-$PWD/target}"
version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)"
deb="$target/debian/portcullis_${version}_amd64.deb"
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
pass() { echo "ok: $*"; }

# expect PATH OWNER:GROUP MODE
expect() {
    if [ ! -e "$1" ]; then fail "$1 missing"; return; fi
    local got
    got="$(stat -c '%U:%G %a' "$1")"
    if [ "$got" = "$2 $3" ]; then pass "$1 $got"; else fail "$1 is $got, expected $2 $3"; fi
}

# The demo's certificates, from the workspace's build (with the demo), before the package
# build (without it) replaces a dev-profile binary.
echo "== the demo's certificates"
demo="$(mktemp -d)"
"$target/debug/portcullis" demo --dir "$demo/pki" --listen 127.0.0.1:0 >"$demo/out" 2>"$demo/err" &
demo_pid=$!
for _ in $(seq 1 300); do
    grep -q '^ready$' "$demo/out" 2>/dev/null && break
    sleep 0.1
done
kill "$demo_pid" 2>/dev/null || true
wait "$demo_pid" 2>/dev/null || true
grep -q '^ready$' "$demo/out" || { cat "$demo/err" >&2; echo "FAIL: portcullis demo did not start" >&2; exit 1; }

echo "== building $deb"
rm -f "$deb"
start=$(date +%s)
cargo deb -p portcullis --profile "${PACKAGE_PROFILE:-release}" --locked -- -j "${PACKAGE_JOBS:-2}" >/dev/null
echo "cargo deb took $(( $(date +%s) - start )) s"
[ -f "$deb" ] || { echo "FAIL: $deb not built" >&2; exit 1; }
dpkg-deb --info "$deb" | sed -n 's/^ *\(Package\|Version\|Architecture\|Depends\|Recommends\):/&/p'

if dpkg -s portcullis >/dev/null 2>&1; then dpkg -P portcullis >/dev/null; fi

echo "== installing"
dpkg -i "$deb"
expect /usr/bin/portcullis root:root 755
expect /lib/systemd/system/portcullis.service root:root 644
expect /etc/logrotate.d/portcullis root:root 644
expect /etc/portcullis root:portcullis 750
expect /etc/portcullis/portcullis.toml root:portcullis 640
for dir in /var/lib/portcullis /var/cache/portcullis /var/log/portcullis; do
    expect "$dir" portcullis:portcullis 750
done
dpkg-query -W -f='${Conffiles}\n' portcullis | grep -q '^ /etc/portcullis/portcullis.toml ' \
    && pass "portcullis.toml is a conffile" || fail "portcullis.toml is not a conffile"
if passwd_line="$(getent passwd portcullis)"; then
    uid="$(echo "$passwd_line" | cut -d: -f3)"
    shell="$(echo "$passwd_line" | cut -d: -f7)"
    [ "$uid" -lt 1000 ] && [ "$shell" = /usr/sbin/nologin ] \
        && pass "system user portcullis (uid $uid, $shell)" \
        || fail "user portcullis: uid $uid, shell $shell"
else
    fail "no portcullis user"
fi
/usr/bin/portcullis --version
if /usr/bin/portcullis demo --help >/dev/null 2>&1; then
    fail "the packaged binary has the demo (it is built without default features)"
else
    pass "the packaged binary has no demo"
fi

echo "== the unit"
if verify="$(systemd-analyze verify /lib/systemd/system/portcullis.service 2>&1)" && [ -z "$verify" ]; then
    pass "systemd-analyze verify: clean"
else
    fail "systemd-analyze verify: $verify"
fi
security="$(systemd-analyze security --offline=true --no-pager /lib/systemd/system/portcullis.service 2>&1 | tail -1)"
echo "$security"
score="$(echo "$security" | sed -n 's/.*exposure level for portcullis.service: \([0-9.]*\).*/\1/p')"
if [ -n "$score" ] && awk "BEGIN { exit !($score <= 2.0) }"; then
    pass "exposure $score <= 2.0"
else
    fail "exposure '$score' above 2.0"
fi
# io_uring under the unit's filter: @system-service (with the groups it includes) must allow
# its three system calls and the denied @privileged must not (else the workers fall back to
# epoll).
expand() {
    local line
    systemd-analyze syscall-filter --no-pager "$1" 2>/dev/null | sed 1d | while read -r line; do
        case "$line" in
            '#'*|'') ;;
            @*) expand "$line" ;;
            *) echo "$line" ;;
        esac
    done
}
allowed="$(expand @system-service)"
denied="$(expand @privileged)"
for call in io_uring_setup io_uring_enter io_uring_register; do
    if echo "$allowed" | grep -qw "$call" && ! echo "$denied" | grep -qw "$call"; then
        pass "SystemCallFilter allows $call"
    else
        fail "SystemCallFilter does not allow $call"
    fi
done
if command -v logrotate >/dev/null; then
    logrotate -d /etc/logrotate.d/portcullis >/dev/null 2>&1 \
        && pass "logrotate accepts /etc/logrotate.d/portcullis" \
        || fail "logrotate -d /etc/logrotate.d/portcullis"
fi

echo "== check on the shipped example, with the demo's certificates in place"
install -d -o root -g portcullis -m 0750 /etc/portcullis/tls
install -o portcullis -g portcullis -m 0600 "$demo/pki/server.pem" /etc/portcullis/tls/server-chain.pem
install -o portcullis -g portcullis -m 0600 "$demo/pki/server.key" /etc/portcullis/tls/server.key
install -o portcullis -g portcullis -m 0600 "$demo/pki/trust-bundle.pem" /etc/portcullis/tls/viewer-ca-bundle.pem
# As the service's ExecStartPre runs it: the portcullis user.
if out="$(runuser -u portcullis -- /usr/bin/portcullis check --config /etc/portcullis/portcullis.toml 2>&1)"; then
    echo "$out"
    if echo "$out" | grep -q warning; then fail "check warns on the shipped example: $out"; else pass "check accepts the shipped example"; fi
else
    fail "check refuses the shipped example: $out"
fi
chmod 0644 /etc/portcullis/tls/server.key
out="$(/usr/bin/portcullis check --config /etc/portcullis/portcullis.toml 2>&1 || true)"
echo "$out" | grep -q "site\[0\].private_key: the private key is readable by every user (mode 0644)" \
    && pass "check warns about a world-readable key" || fail "no warning for a world-readable key: $out"
chmod 0640 /etc/portcullis/tls/server.key
out="$(/usr/bin/portcullis check --config /etc/portcullis/portcullis.toml 2>&1 || true)"
echo "$out" | grep -q "readable by its group (mode 0640)" \
    && pass "check warns about a group-readable key" || fail "no warning for a group-readable key: $out"
rm -rf /etc/portcullis/tls "$demo"

echo "== remove"
dpkg -r portcullis
[ ! -e /usr/bin/portcullis ] && [ ! -e /lib/systemd/system/portcullis.service ] \
    && pass "binary and unit removed" || fail "binary or unit left after remove"
[ -f /etc/portcullis/portcullis.toml ] && pass "conffile kept until purge" || fail "conffile gone on remove"
echo "== purge"
dpkg -P portcullis
for path in /etc/portcullis /etc/logrotate.d/portcullis /var/lib/portcullis /var/cache/portcullis /var/log/portcullis; do
    [ ! -e "$path" ] && pass "$path gone" || fail "$path left after purge"
done
dpkg -s portcullis >/dev/null 2>&1 && fail "still known to dpkg" || pass "not installed"

if [ "$failures" -gt 0 ]; then
    echo "package test: $failures failure(s)" >&2
    exit 1
fi
echo "package test: all checks passed"
