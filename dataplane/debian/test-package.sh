#!/usr/bin/env bash
# The Debian package, end to end, on this machine (as root, as CI runs it): build it with
# `cargo deb`, install it with dpkg, check what it installed (files, owners, modes, the
# conffile, the system user, the unit with `systemd-analyze verify` and `security`), run
# `portcullis check` on the shipped example once the demo's certificates are in place (and
# see it warn about a world-readable key), start the installed service on it as the unit
# would (read-only file system, its user, capability, no-new-privileges, umask and seccomp
# filters; port 443, mTLS, log reopen, a binary upgrade, SIGTERM), then remove and purge it
# and check that nothing is left. Maintainer scripts run without systemd here when PID 1 is
# not systemd (a container).
#
#   dataplane/debian/test-package.sh            # needs cargo-deb, dpkg, systemd-analyze, python3
#                                                # and libseccomp2 (the unit's filters)
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
# The workspace's debug build with the demo (fresh after the tests: no work); a dev-profile
# package build below replaces target/debug/portcullis, and the end of this script puts the
# full one back for the end-to-end tests.
full_binary() { cargo build -q -p portcullis --bin portcullis --locked; }
full_binary
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

echo "== the service as its unit runs it (without systemd as PID 1)"
# ProtectSystem=strict with the unit's ReadWritePaths= (and RuntimeDirectory=), PrivateTmp=
# and ProtectHome= in a private mount namespace (unshare); LimitNOFILE= (prlimit); User=, Group=, UMask=,
# AmbientCapabilities=/CapabilityBoundingSet=CAP_NET_BIND_SERVICE and NoNewPrivileges=
# through setpriv; the unit's seccomp settings (system-call filter, W^X, address families)
# through tests/support/unit_sandbox.py. Not emulated: PrivateDevices=, the kernel, clock,
# hostname and /proc protections. The shipped example as installed: port 443, logs under
# /var/log/portcullis, the admin socket under /run/portcullis.
if (exec 3<>/dev/tcp/127.0.0.1/443) 2>/dev/null; then
    fail "port 443 is taken on this machine: cannot start the installed service"
else
    # Outside /tmp and /root, which the service does not see.
    sandbox="$(mktemp -d /run/portcullis-test.XXXXXX)"
    chmod 0755 "$sandbox"
    install -m 0644 tests/support/unit_sandbox.py "$sandbox/unit_sandbox.py"
    install -d -o portcullis -g portcullis -m 0750 /run/portcullis
    writable="$(sed -n 's/^ReadWritePaths=//p' /lib/systemd/system/portcullis.service) /run/portcullis"
    cat >"$sandbox/mounts.sh" <<MOUNTS
set -e
for path in $writable; do mount --bind "\$path" "\$path"; done
for target in \$(findmnt -rn -o TARGET); do
    case " $writable " in *" \$target "*) continue ;; esac
    case "\$target" in
        /|/usr|/usr/*|/etc|/etc/*|/var|/var/*|/run|/run/*|/boot|/boot/*|/opt|/opt/*|/srv|/srv/*|/tmp|/tmp/*|/home|/home/*|/root|/root/*)
            mount -o remount,bind,ro "\$target" ;;
    esac
done
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /var/tmp
for home in /home /root /run/user; do [ ! -d "\$home" ] || mount -t tmpfs -o mode=0000 tmpfs "\$home"; done
exec "\$@"
MOUNTS
    # One subshell, exec'd all the way (unshare, sh, setpriv, python, portcullis): $! is the
    # service. /usr/bin/python3: the service user cannot run what root may have on its PATH.
    nofile="$(sed -n 's/^LimitNOFILE=//p' /lib/systemd/system/portcullis.service)"
    limit=(prlimit --nofile="$nofile")
    # A container without CAP_SYS_RESOURCE cannot raise the hard limit (systemd on a host can).
    if ! prlimit --nofile="$nofile" true 2>/dev/null; then
        echo "skipped: LimitNOFILE=$nofile (this machine refuses to raise the hard open-file limit above $(ulimit -Hn))"
        limit=(env)
    fi
    (umask 0077 && exec unshare --mount --propagation private sh "$sandbox/mounts.sh" \
        "${limit[@]}" setpriv --reuid portcullis --regid portcullis --init-groups \
        --inh-caps -all,+net_bind_service --ambient-caps -all,+net_bind_service \
        --bounding-set -all,+net_bind_service --nnp \
        /usr/bin/python3 "$sandbox/unit_sandbox.py" --unit /lib/systemd/system/portcullis.service -- \
        /usr/bin/portcullis run --config /etc/portcullis/portcullis.toml) \
        >"$sandbox/out" 2>"$sandbox/err" &
    service_pid=$!
    for _ in $(seq 1 300); do
        grep -q '^ready$' "$sandbox/out" 2>/dev/null && break
        kill -0 "$service_pid" 2>/dev/null || break
        sleep 0.1
    done
    if grep -q '^ready$' "$sandbox/out"; then
        pass "the installed service started (pid $service_pid): $(grep '^listening' "$sandbox/out")"
        status="$(cat "/proc/$service_pid/status")"
        field() { echo "$status" | sed -n "s/^$1:[[:space:]]*//p"; }
        uid="$(id -u portcullis)"
        [ "$(field Uid | awk '{print $1 $2 $3 $4}')" = "$uid$uid$uid$uid" ] \
            && pass "runs as portcullis" || fail "Uid: $(field Uid)"
        # CAP_NET_BIND_SERVICE is bit 10: 0x400, and nothing else.
        [ "$(field CapEff)" = 0000000000000400 ] && [ "$(field CapBnd)" = 0000000000000400 ] \
            && pass "capabilities: only CAP_NET_BIND_SERVICE" \
            || fail "CapEff $(field CapEff), CapBnd $(field CapBnd)"
        [ "$(field NoNewPrivs)" = 1 ] && [ "$(field Seccomp_filters)" -ge 3 ] \
            && pass "no new privileges, $(field Seccomp_filters) seccomp filters" \
            || fail "NoNewPrivs $(field NoNewPrivs), Seccomp_filters $(field Seccomp_filters)"
        root_options="$(awk '$5 == "/" { print $6 }' "/proc/$service_pid/mountinfo")"
        tmp_type="$(awk '$5 == "/tmp" { for (i = 7; $i != "-"; i++); print $(i + 1) }' "/proc/$service_pid/mountinfo" | tail -1)"
        case "$root_options" in ro,*) true ;; *) false ;; esac && [ "$tmp_type" = tmpfs ] \
            && pass "read-only file system but for its state, cache, logs and runtime directory; a private /tmp" \
            || fail "mounts: / $root_options, /tmp $tmp_type"
        if [ "${limit[0]}" != env ]; then
            [ "$(awk '/^Max open files/ { print $4 " " $5 }' "/proc/$service_pid/limits")" = "$nofile $nofile" ] \
                && ! grep -q "open-file limit" "$sandbox/err" \
                && pass "LimitNOFILE=$nofile: enough for the connection limits (no warning)" \
                || fail "open files: $(grep '^Max open files' "/proc/$service_pid/limits"); $(grep 'open-file limit' "$sandbox/err")"
        fi
        grep -q "fall back to epoll" "$sandbox/err" \
            && fail "io_uring refused under the unit's filter: $(cat "$sandbox/err")" \
            || pass "workers on io_uring under the unit's filter"
        request() {
            curl -s -o /dev/null -w '%{http_code}' --max-time 10 --resolve localhost:443:127.0.0.1 \
                --cacert "$demo/pki/root-ca.pem" "$@" https://localhost/ || true
        }
        # The example's origin (127.0.0.1:8080) is not there: a 502 from portcullis shows
        # the handshake with the client certificate passed; without one there is no answer.
        code="$(request --cert "$demo/pki/client.pem" --key "$demo/pki/client.key")"
        [ "$code" = 502 ] && pass "a client with a certificate is let through (502: no origin)" \
            || fail "with a client certificate: HTTP $code"
        code="$(request)"
        [ "$code" = 000 ] && pass "a client without a certificate is refused" \
            || fail "without a client certificate: HTTP $code"
        expect /var/log/portcullis/connection.log portcullis:portcullis 600
        expect /run/portcullis/admin.sock portcullis:portcullis 600
        # logrotate's move and reopen (SIGUSR1), by hand: systemctl is not there to send it.
        mv /var/log/portcullis/connection.log /var/log/portcullis/connection.log.1
        kill -USR1 "$service_pid"
        for _ in $(seq 1 100); do [ -e /var/log/portcullis/connection.log ] && break; sleep 0.05; done
        request --cert "$demo/pki/client.pem" --key "$demo/pki/client.key" >/dev/null
        for _ in $(seq 1 100); do [ -s /var/log/portcullis/connection.log ] && break; sleep 0.05; done
        [ -s /var/log/portcullis/connection.log ] && pass "SIGUSR1 reopened the connection log" \
            || fail "no new connection log after SIGUSR1"
        # A binary upgrade of the installed service: the new process keeps the user, the
        # capability and the filters, and the port.
        if out="$(/usr/bin/portcullis upgrade --pid "$service_pid" --timeout 30 2>&1)"; then
            new_pid="$(echo "$out" | sed -n 's/.*handed over to process \([0-9]*\).*/\1/p')"
            status="$(cat "/proc/$new_pid/status" 2>/dev/null)"
            [ "$(field CapEff)" = 0000000000000400 ] && [ "$(field Seccomp_filters)" -ge 3 ] \
                && [ "$(field Uid | awk '{print $1}')" = "$uid" ] \
                && pass "binary upgrade: process $new_pid as portcullis, same capability and filters" \
                || fail "binary upgrade: new process $new_pid: $status"
            code="$(request --cert "$demo/pki/client.pem" --key "$demo/pki/client.key")"
            [ "$code" = 502 ] && pass "the new process serves" || fail "after the upgrade: HTTP $code"
            old_exit=0
            wait "$service_pid" || old_exit=$?
            [ "$old_exit" = 0 ] && pass "the old process exited 0 after the upgrade" \
                || fail "the old process exited $old_exit"
            kill -TERM "$new_pid"
            for _ in $(seq 1 300); do kill -0 "$new_pid" 2>/dev/null || break; sleep 0.1; done
            kill -0 "$new_pid" 2>/dev/null && { fail "the new process did not stop on SIGTERM"; kill -KILL "$new_pid"; } \
                || pass "the new process stopped on SIGTERM"
        else
            fail "binary upgrade of the installed service: $out"
            kill -TERM "$service_pid"
            wait "$service_pid" || true
        fi
    else
        fail "the installed service did not start: $(cat "$sandbox/err")"
        kill -KILL "$service_pid" 2>/dev/null || true
        wait "$service_pid" 2>/dev/null || true
    fi
    rm -rf "$sandbox" /run/portcullis
fi

echo "== check on group- and world-readable keys"
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

full_binary

if [ "$failures" -gt 0 ]; then
    echo "package test: $failures failure(s)" >&2
    exit 1
fi
echo "package test: all checks passed"
