"""A small seccomp filter for the local sandbox: refuse the system calls sandboxed code has no use for.

Refused with EPERM: kernel keyrings (keyctl, add_key, request_key: all sandboxes share uid 65534, so a
keyring would be a channel between sessions), new namespaces (unshare, setns, clone with CLONE_NEWUSER:
a user namespace is where most kernel privilege-escalation bugs start), mount and module/kexec/reboot/swap
calls, ptrace, bpf, perf_event_open, userfaultfd, syslog (the host's kernel log), io_uring (its own
submission path has been a steady source of kernel exploits, and nothing here needs it), file-handle calls
(open_by_handle_at can escape mount namespaces), and every system call of a foreign ABI (x32, or i386 on x86_64) so the list cannot be
bypassed. clone3 gets ENOSYS, so the C library falls back to clone, whose flags the filter can inspect
(the same choice as Docker's default profile).

The filter is raw classic BPF built here (no libseccomp needed) and handed to bubblewrap's --seccomp. Only
x86_64 and aarch64 are covered; elsewhere `filter_bytes` returns None and the sandbox runs without it.

The docker sandbox gets the same list as a Docker seccomp profile (`docker_profile`, passed with
`--security-opt seccomp=...`). Docker's own default profile (an allow-list compiled into the daemon, which
cannot be read back from it) lets io_uring through on the engines this project meets (Debian's 20.10) and
allows ptrace, and a ptrace(PTRACE_TRACEME) in the kernel made docker-init (the container's PID 1, the
kernel's parent) exit, which ended the container. Ours replaces it: this deny-list, every foreign ABI
refused (only the native architecture is listed), and, with every capability dropped and
no-new-privileges, the capability-gated calls that make up most of Docker's list still fail.

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
            "io_uring_setup": 425,
            "io_uring_enter": 426,
            "io_uring_register": 427,
            "syslog": 103,
            "fsconfig": 431,
            "fspick": 433,
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
            "io_uring_setup": 425,
            "io_uring_enter": 426,
            "io_uring_register": 427,
            "syslog": 116,
            "fsconfig": 431,
            "fspick": 433,
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


# Namespace flags of clone(2): the docker profile refuses a clone with any of them (the BPF filter above
# checks CLONE_NEWUSER only: without capabilities the kernel refuses the others itself).
_CLONE_NAMESPACE_FLAGS = (
    0x00020000,  # CLONE_NEWNS
    0x02000000,  # CLONE_NEWCGROUP
    0x04000000,  # CLONE_NEWUTS
    0x08000000,  # CLONE_NEWIPC
    _CLONE_NEWUSER,
    0x20000000,  # CLONE_NEWPID
    0x40000000,  # CLONE_NEWNET
)
_DOCKER_ARCH = {"x86_64": "SCMP_ARCH_X86_64", "aarch64": "SCMP_ARCH_AARCH64"}


def docker_profile(machine: str | None = None) -> dict | None:
    """The same refusals as a Docker seccomp profile (JSON-ready), or None where the arch is not covered."""
    name = machine or platform.machine()
    arch = _ARCHES.get(name)
    if arch is None:
        return None
    rules: list[dict] = [
        {"names": sorted(arch["blocked"]), "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EPERM},
        {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.ENOSYS},
    ]
    for flag in _CLONE_NAMESPACE_FLAGS:
        rules.append(
            {
                "names": ["clone"],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": errno.EPERM,
                # Refused when (flags & flag) == flag. x86_64 and aarch64 both take the flags first.
                "args": [{"index": 0, "value": flag, "valueTwo": flag, "op": "SCMP_CMP_MASKED_EQ"}],
            }
        )
    return {"defaultAction": "SCMP_ACT_ALLOW", "architectures": [_DOCKER_ARCH[name]], "syscalls": rules}
