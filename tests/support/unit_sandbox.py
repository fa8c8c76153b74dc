#!/usr/bin/env python3
"""Runs a command under the seccomp part of a systemd unit's sandbox, without systemd.

    unit_sandbox.py --unit dataplane/debian/portcullis.service [--deny SYSCALL]... -- CMD ARGS...

Reads the unit's `SystemCallFilter=` lines (an allow-list of groups and calls, `~` lines taken
out of it, `@default` added as systemd adds it), `SystemCallErrorNumber=`,
`MemoryDenyWriteExecute=` and `RestrictAddressFamilies=`, expands the groups with this
machine's `systemd-analyze syscall-filter` (the same tables systemd uses), loads the filters
through libseccomp (loaded with ctypes; systemd uses the same library and the same rules, one
filter per setting) and execs CMD, which keeps them, as a service's main process does.
`--deny` takes a call out of the allow-list as well (e.g. io_uring_setup, to see the epoll
fallback). The end-to-end tests run `portcullis run` under it (tests/tests/service_sandbox.rs)
where PID 1 is not systemd and `systemd-run -p ...` is not an option.

Not emulated: users, capabilities and the mount namespace (ProtectSystem= and the like), which
the package test and `systemd-analyze security` cover.
"""

import argparse
import ctypes
import ctypes.util
import errno
import os
import subprocess
import sys

SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_CMP_GE = 5
SCMP_CMP_EQ = 4
SCMP_CMP_MASKED_EQ = 7
PROT_WRITE = 0x2
PROT_EXEC = 0x4
SHM_EXEC = 0o100000
AF_MAX = 64
FAMILIES = {"AF_UNIX": 1, "AF_LOCAL": 1, "AF_INET": 2, "AF_INET6": 10, "AF_NETLINK": 16, "AF_PACKET": 17}


def scmp_act_errno(code):
    return 0x00050000 | (code & 0xFFFF)


class ArgCmp(ctypes.Structure):
    """struct scmp_arg_cmp"""

    _fields_ = [
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    ]


def load_libseccomp():
    name = ctypes.util.find_library("seccomp") or "libseccomp.so.2"
    lib = ctypes.CDLL(name, use_errno=True)
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.restype = ctypes.c_int
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add_array.restype = ctypes.c_int
    lib.seccomp_rule_add_array.argtypes = [
        ctypes.c_void_p,
        ctypes.c_uint32,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.POINTER(ArgCmp),
    ]
    lib.seccomp_load.restype = ctypes.c_int
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    return lib


class Filter:
    """One seccomp filter: a default action and rules."""

    def __init__(self, lib, default):
        self.lib = lib
        self.ctx = lib.seccomp_init(default)
        if not self.ctx:
            sys.exit("unit_sandbox: seccomp_init failed")

    def rule(self, action, name, *cmps):
        nr = self.lib.seccomp_syscall_resolve_name(name.encode())
        if nr < 0:
            return False  # not a call of this architecture (systemd skips those too)
        array = (ArgCmp * max(len(cmps), 1))(*[ArgCmp(*c) for c in cmps])
        rc = self.lib.seccomp_rule_add_array(self.ctx, action, nr, len(cmps), array)
        if rc < 0:
            sys.exit(f"unit_sandbox: rule for {name}: {os.strerror(-rc)}")
        return True

    def load(self):
        rc = self.lib.seccomp_load(self.ctx)
        if rc < 0:
            sys.exit(f"unit_sandbox: seccomp_load: {os.strerror(-rc)}")


def expand(item, seen=None):
    """The calls a group names, recursively (systemd-analyze syscall-filter)."""
    if not item.startswith("@"):
        return {item}
    seen = seen if seen is not None else set()
    if item in seen:
        return set()
    seen.add(item)
    out = subprocess.run(
        ["systemd-analyze", "syscall-filter", "--no-pager", item],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    calls = set()
    for line in out.splitlines()[1:]:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        calls |= expand(line, seen)
    return calls


def unit_settings(path):
    settings = {}
    with open(path) as unit:
        for line in unit:
            line = line.strip()
            if not line or line.startswith(("#", ";", "[")) or "=" not in line:
                continue
            key, value = line.split("=", 1)
            settings.setdefault(key, []).append(value)
    return settings


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--unit", required=True)
    parser.add_argument("--deny", action="append", default=[])
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command")
    settings = unit_settings(args.unit)
    lib = load_libseccomp()

    error = settings.get("SystemCallErrorNumber", ["EPERM"])[-1]
    deny_action = scmp_act_errno(getattr(errno, error))

    allowed = None
    for value in settings.get("SystemCallFilter", []):
        invert = value.startswith("~")
        items = value.lstrip("~").split()
        calls = set().union(*(expand(i) for i in items)) if items else set()
        if invert:
            if allowed is None:
                sys.exit("unit_sandbox: only allow-list filters (with ~ removals) are emulated")
            allowed -= calls
        else:
            if allowed is None:
                allowed = expand("@default")
            allowed |= calls

    families = settings.get("RestrictAddressFamilies", [])
    if families:
        keep = {FAMILIES[f] for v in families for f in v.split()}
        fam = Filter(lib, SCMP_ACT_ALLOW)
        refuse = scmp_act_errno(errno.EAFNOSUPPORT)
        for family in range(AF_MAX):
            if family not in keep:
                fam.rule(refuse, "socket", (0, SCMP_CMP_EQ, family, 0))
        fam.rule(refuse, "socket", (0, SCMP_CMP_GE, AF_MAX, 0))
        fam.load()

    if settings.get("MemoryDenyWriteExecute", ["no"])[-1] in ("yes", "true", "1", "on"):
        mdwe = Filter(lib, SCMP_ACT_ALLOW)
        eperm = scmp_act_errno(errno.EPERM)
        wx = PROT_WRITE | PROT_EXEC
        mdwe.rule(eperm, "mmap", (2, SCMP_CMP_MASKED_EQ, wx, wx))
        mdwe.rule(eperm, "mprotect", (2, SCMP_CMP_MASKED_EQ, PROT_EXEC, PROT_EXEC))
        mdwe.rule(eperm, "pkey_mprotect", (2, SCMP_CMP_MASKED_EQ, PROT_EXEC, PROT_EXEC))
        mdwe.rule(eperm, "shmat", (2, SCMP_CMP_MASKED_EQ, SHM_EXEC, SHM_EXEC))
        mdwe.load()
        print("unit_sandbox: MemoryDenyWriteExecute", file=sys.stderr)

    # Last, as systemd does: the allow-list may not include seccomp(2) itself.
    if allowed is not None:
        allowed -= set(args.deny)
        allow = Filter(lib, deny_action)
        added = sum(allow.rule(SCMP_ACT_ALLOW, call) for call in sorted(allowed))
        print(f"unit_sandbox: {added} system calls allowed", file=sys.stderr)
        allow.load()
    elif args.deny:
        deny = Filter(lib, SCMP_ACT_ALLOW)
        for call in args.deny:
            deny.rule(deny_action, call)
        deny.load()

    sys.stderr.flush()
    os.execvp(command[0], command)


if __name__ == "__main__":
    main()
