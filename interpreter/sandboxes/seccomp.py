"""A small seccomp filter for the local sandbox: refuse the system calls sandboxed code has no use for.

Refused with EPERM: kernel keyrings (keyctl, add_key, request_key: all sandboxes share uid 65534, so a
keyring would be a channel between sessions), new namespaces (unshare, setns, clone with CLONE_NEWUSER:
a user namespace is where most kernel privilege-escalation bugs start), mount and module/kexec/reboot/swap
calls, ptrace, bpf, perf_event_open, userfaultfd, file-handle calls (open_by_handle_at can escape mount
namespaces), and every system call of a foreign ABI (x32, or i386 on x86_64) so the list cannot be
bypassed. clone3 gets ENOSYS, so the C library falls back to clone, whose flags the filter can inspect
(the same choice as Docker's default profile).

The filter is raw classic BPF built here (no libseccomp needed) and handed to bubblewrap's --seccomp. Only
x86_64 and aarch64 are covered; elsewhere `filter_bytes` returns None and the sandbox runs without it.

What it deliberately does not do: allow-list system calls (numpy, pip and compilers use a wide and
changing set), or anything for the unshare fallback, which has no way to install it.
"""

from __future__ import annotations

import errno
import platform
import struct

_LD_W_ABS = 0x20
_JEQ = 0x15
_JGE = 0x35
_JSET = 0x45
_RET = 0x06

_RET_ALLOW = 0x7FFF0000
_RET_ERRNO = 0x00050000

_CLONE_NEWUSER = 0x10000000
_X32_BIT = 0x40000000

# seccomp_data: int nr; u32 arch; u64 instruction_pointer; u64 args[6]
_OFFSET_NR = 0
_OFFSET_ARCH = 4
_OFFSET_ARG0_LOW = 16  # little-endian: the low 32 bits of args[0] (clone's flags)

_ARCHES = {
    "x86_64": {
        "audit_arch": 0xC000003E,
        "clone": 56,
        "clone3": 435,
        "blocked": {
            "ptrace": 101,
            "pivot_root": 155,
            "mount": 165,
            "umount2": 166,
            "swapon": 167,
            "swapoff": 168,
            "reboot": 169,
            "init_module": 175,
            "delete_module": 176,
            "kexec_load": 246,
            "add_key": 248,
            "request_key": 249,
            "keyctl": 250,
            "unshare": 272,
            "perf_event_open": 298,
            "name_to_handle_at": 303,
            "open_by_handle_at": 304,
            "setns": 308,
            "finit_module": 313,
            "kexec_file_load": 320,
            "bpf": 321,
            "userfaultfd": 323,
            "fsopen": 430,
            "fsmount": 432,
            "move_mount": 429,
            "open_tree": 428,
        },
    },
    "aarch64": {
        "audit_arch": 0xC00000B7,
        "clone": 220,
        "clone3": 435,
        "blocked": {
            "umount2": 39,
            "mount": 40,
            "pivot_root": 41,
            "unshare": 97,
            "kexec_load": 104,
            "init_module": 105,
            "delete_module": 106,
            "ptrace": 117,
            "reboot": 142,
            "add_key": 217,
            "request_key": 218,
            "keyctl": 219,
            "swapon": 224,
            "swapoff": 225,
            "perf_event_open": 241,
            "name_to_handle_at": 264,
            "open_by_handle_at": 265,
            "setns": 268,
            "finit_module": 273,
            "bpf": 280,
            "userfaultfd": 282,
            "kexec_file_load": 294,
            "open_tree": 428,
            "move_mount": 429,
            "fsopen": 430,
            "fsmount": 432,
        },
    },
}


def _insn(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def filter_bytes(machine: str | None = None) -> bytes | None:
    """The compiled filter for this machine's architecture, or None where it is not supported."""
    arch = _ARCHES.get(machine or platform.machine())
    if arch is None:
        return None
    blocked = sorted(arch["blocked"].values())
    # Layout: checks first, then three return instructions at the end: ERRNO(EPERM), ERRNO(ENOSYS), ALLOW.
    body: list[tuple[int, int, str | None, str | None]] = []  # (code, k, jump-if-true, jump-if-false)
    body.append((_LD_W_ABS, _OFFSET_ARCH, None, None))
    body.append((_JEQ, arch["audit_arch"], None, "eperm"))
    body.append((_LD_W_ABS, _OFFSET_NR, None, None))
    if arch is _ARCHES["x86_64"]:
        body.append((_JGE, _X32_BIT, "eperm", None))
    for number in blocked:
        body.append((_JEQ, number, "eperm", None))
    body.append((_JEQ, arch["clone3"], "enosys", None))
    body.append((_JEQ, arch["clone"], None, "allow"))
    body.append((_LD_W_ABS, _OFFSET_ARG0_LOW, None, None))
    body.append((_JSET, _CLONE_NEWUSER, "eperm", "allow"))
    targets = {"eperm": len(body), "enosys": len(body) + 1, "allow": len(body) + 2}
    program = b""
    for index, (code, k, if_true, if_false) in enumerate(body):
        if code == _LD_W_ABS:
            program += _insn(code, k)
            continue
        jt = targets[if_true] - index - 1 if if_true else 0
        jf = targets[if_false] - index - 1 if if_false else 0
        program += _insn(code, k, jt, jf)
    program += _insn(_RET, _RET_ERRNO | errno.EPERM)
    program += _insn(_RET, _RET_ERRNO | errno.ENOSYS)
    program += _insn(_RET, _RET_ALLOW)
    return program
