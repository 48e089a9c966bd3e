"""The master CLI's `show proc`, parsed (pure): which worker is current, how many reloads the
master refused, and how many old workers are still finishing requests after a reload."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class Procs:
    worker: int | None  # pid of the current worker
    failed: int  # reloads the master refused (it kept the old configuration)
    old_workers: int  # workers of earlier configurations, still serving their requests

    @classmethod
    def parse(cls, out: str) -> Procs:
        worker, failed, old, section = None, 0, 0, ""
        for line in out.splitlines():
            fields = line.split()
            if line.startswith("#"):
                section = line.strip()
                continue
            if len(fields) >= 2 and fields[1] == "master" and "[failed:" in line:
                failed = int(line.split("[failed:")[1].split("]")[0])
            elif len(fields) >= 2 and fields[1] == "worker":
                if section.startswith("# workers"):
                    worker = int(fields[0])
                elif section.startswith("# old workers"):
                    old += 1
        return cls(worker=worker, failed=failed, old_workers=old)
