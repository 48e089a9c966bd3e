"""Build contexts unpacked under the control plane's umask (077) stay readable in the image."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path

from pipeline.build import contexts


def _archive(*members: tuple[str, int, bool]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, mode, is_dir in members:
            info = tarfile.TarInfo(name)
            info.mode = mode
            info.type = tarfile.DIRTYPE if is_dir else tarfile.REGTYPE
            tar.addfile(info, io.BytesIO(b"") if not is_dir else None)
    return buf.getvalue()


def test_implied_folders_get_0755_listed_ones_keep_their_mode(tmp_path: Path) -> None:
    source = _archive(("www/cgi-bin/env", 0o755, False), ("private", 0o700, True))
    old = os.umask(0o077)
    try:
        root = contexts.unpack(source, tmp_path / "ctx")
    finally:
        os.umask(old)

    def mode(p: Path) -> int:
        return stat.S_IMODE(p.stat().st_mode)

    assert mode(root / "www") == mode(root / "www" / "cgi-bin") == 0o755
    assert mode(root / "private") == 0o700
    assert mode(root / "www" / "cgi-bin" / "env") == 0o755
    assert mode(root) == 0o700
