"""The session uid/gid must belong to nobody on the host.

Kernel processes run as ``jail.uid:jail.gid``. If that uid were a host account (on
this host uid 1000 is a real user), a process escaping its mount namespace, a file
left in a shared directory or a bind-mount mistake would act as that user. So the
agent refuses to start when the ids name an account or group (through NSS, so LDAP
and sssd users count) or fall inside a subordinate id range of ``/etc/subuid`` /
``/etc/subgid`` (a host user can become those ids in a rootless container).
"""
from __future__ import annotations

import grp
import pwd
from pathlib import Path

from common.config import ConfigError

SUBUID = Path("/etc/subuid")
SUBGID = Path("/etc/subgid")


def _subordinate_owner(path: Path, wanted: int) -> str | None:
    """The user whose ``name:start:count`` range in ``path`` holds ``wanted``, if any."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.strip().split(":")
        if len(fields) != 3 or not fields[1].isdigit() or not fields[2].isdigit():
            continue
        start, count = int(fields[1]), int(fields[2])
        if start <= wanted < start + count:
            return fields[0]
    return None


def _user_name(uid: int) -> str | None:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None


def _group_name(gid: int) -> str | None:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return None


def check_session_ids(uid: int, gid: int, subuid: Path = SUBUID,
                      subgid: Path = SUBGID) -> None:
    """Raise ``ConfigError`` (one line) unless ``uid``/``gid`` are free on this host."""
    for key, ident, name, what in (("jail.uid", uid, _user_name(uid), "account"),
                                   ("jail.gid", gid, _group_name(gid), "group")):
        if name is not None:
            raise ConfigError(f"{key} {ident} is the host {what} {name!r}: "
                              f"choose an id that belongs to no host {what}")
    for path, wanted, what in ((subuid, uid, "jail.uid"), (subgid, gid, "jail.gid")):
        owner = _subordinate_owner(path, wanted)
        if owner is not None:
            raise ConfigError(f"{what} {wanted} lies in {owner!r}'s subordinate id range "
                              f"in {path}: choose an id outside every range")
