"""Who is calling the metadata server, at N instances: the caller index against a full listing.

Every token an instance asks for starts with finding the caller by its source address
(`identity.dockercallers`). This starts N labelled busybox containers on a network of their own
(the real dockerd; no platform needed), then times, side by side in one run, the lookup of a
known address as the metadata server does it (re-read the caller's container by id) and as it
used to (list every container of the platform), plus a stranger's lookup (always a full listing).

    .venv/bin/python -m bench.callers [--quick] [--sizes 100,500] [--json]
"""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import docker
import docker.errors

from bench.common import Case, Column, bench_arguments, emit, median_ms, progress, size_list
from pipeline.build.baseimages import ensure_base_images
from pipeline.core import names
from pipeline.engines.docker import DockerEngine
from pipeline.identity.dockercallers import CallerIndex, callers_by_address

BUSYBOX = "slipway/busybox:1.35-bookworm"  # made from the OS archive (build.baseimages)


def start(client: docker.DockerClient, *, platform: str, network: str, i: int) -> None:
    service = f"svc-{i:03d}"
    labels = {names.LABEL_MANAGED: "true", names.LABEL_PLATFORM: platform,
              names.LABEL_SERVICE: service, names.LABEL_REVISION: f"{service}-00001",
              names.LABEL_INSTANCE: f"{service}-i"}  # fmt: skip
    client.containers.run(BUSYBOX, ["sleep", "3600"], detach=True, labels=labels,
                          network=network)  # fmt: skip


def measure(client: docker.DockerClient, size: int, *, times: int) -> Case:
    platform = f"bench-callers-{uuid.uuid4().hex[:6]}"
    net = client.networks.create(platform, driver="bridge")
    try:
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda i: start(client, platform=platform, network=platform, i=i),
                          range(size)))  # fmt: skip
        engine = DockerEngine(client, platform=platform, network=platform)
        known = sorted(callers_by_address(engine.listing(), network=platform))
        assert len(known) == size, f"{len(known)} of {size} containers have an address"
        index = CallerIndex(lambda ids: engine.listing(ids=ids), network=platform)
        address = known[size // 2]
        index(address)  # the first lookup lists in full and fills the index
        indexed = median_ms(lambda: index(address), times=times)
        assert index.full_listings == 1, "the index listed in full for a known address"
        listed = median_ms(lambda: callers_by_address(engine.listing(), network=platform)[address],
                           times=times)  # fmt: skip
        stranger = median_ms(lambda: index("192.0.2.1"), times=times)
    finally:
        for c in client.containers.list(
            all=True, filters={"label": f"{names.LABEL_PLATFORM}={platform}"}
        ):
            c.remove(force=True)
        net.remove()
    return {"name": f"{size} instances", "index_ms": round(indexed, 2),
            "full_listing_ms": round(listed, 2), "stranger_ms": round(stranger, 2)}  # fmt: skip


COLUMNS = [Column("name", "size", "<15"), Column("index_ms", "known (index) ms", ">17.2f"),
           Column("full_listing_ms", "known (listing) ms", ">19.2f"),
           Column("stranger_ms", "stranger ms", ">12.2f")]  # fmt: skip


def main() -> None:
    parser = bench_arguments(__doc__ or "")
    parser.add_argument("--quick", action="store_true", help="100 instances, 20 lookups each")
    parser.add_argument("--sizes", type=size_list, help="e.g. 10,100,500")
    args = parser.parse_args()
    sizes = args.sizes or ((100,) if args.quick else (10, 100, 500))
    client = docker.from_env(timeout=300)
    ensure_base_images(client, references=[BUSYBOX])
    cases = []
    for size in sizes:
        progress(f"{size} instances")
        cases.append(measure(client, size, times=20 if args.quick else 50))
    note = "medians of the caller lookup a token request starts with, against the real dockerd"
    emit(cases, COLUMNS, as_json=args.json, notes=[note])


if __name__ == "__main__":
    main()
