"""The runtime commands that bring a running HAProxy's certificates to a plane, decided purely.

HAProxy swaps a certificate in a transaction: `set ssl cert <file>` stages the new PEM, `commit
ssl cert <file>` replaces it everywhere at once (handshakes after it get the new one,
connections already open keep theirs), so a renewal drops no request and needs no reload. A
certificate HAProxy does not know yet is made first (`new ssl cert`) and, once committed, put
in the HTTPS listener's crt-list (`add ssl crt-list`). HAProxy holds one transaction at a time:
one left open (a control plane that died mid-swap) is aborted first.

Serials are compared as numbers: HAProxy prints them in uppercase hex with leading zeros.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import dataclass
from typing import Literal

Op = Literal["abort", "new", "set", "commit", "add", "remove", "delete"]


@dataclass(frozen=True, kw_only=True)
class CertChange:
    op: Op
    path: str
    pem: str = ""  # for "set"


def same_serial(a: str, b: str) -> bool:
    try:
        return int(a, 16) == int(b, 16)
    except ValueError:
        return False


def cert_changes(
    *,
    wanted: Mapping[str, tuple[str, str]],
    fallback: tuple[str, str, str],
    loaded: Mapping[str, str],
    listed: Set[str],
    pending: Set[str],
) -> list[CertChange]:
    """`wanted`: crt-list file -> (serial, pem); `fallback`: (file, serial, pem) of the bind's
    default certificate; `loaded`: file -> serial of what HAProxy has; `listed`: the files its
    crt-list names; `pending`: files with an open transaction."""
    changes = [CertChange(op="abort", path=path) for path in sorted(pending)]
    path, serial, pem = fallback
    if not same_serial(loaded.get(path, ""), serial):
        changes += _swap(path, pem)
    for path, (serial, pem) in sorted(wanted.items()):
        if path not in loaded:
            changes += [CertChange(op="new", path=path), *_swap(path, pem)]
        elif not same_serial(loaded[path], serial):
            changes += _swap(path, pem)
        if path not in listed or path not in loaded:
            changes.append(CertChange(op="add", path=path))
    for path in sorted(set(listed) - set(wanted)):
        changes += [CertChange(op="remove", path=path), CertChange(op="delete", path=path)]
    return changes


def _swap(path: str, pem: str) -> list[CertChange]:
    return [CertChange(op="set", path=path, pem=pem), CertChange(op="commit", path=path)]
