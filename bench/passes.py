"""A quiet reconcile pass's own work at N services: the store read and the plan, in-process.

`bench.scale` measures the whole pass on a running platform, but growing it to 500 services
takes tens of minutes; this measures, in seconds, the part of a pass that grows with services
that did not change: `Store.snapshot()` against a real SQLite store in a temporary directory and
`planner.plan` on it. The store holds N services (20 with a ready instance and HAProxy figures,
the rest idle, two revisions each, the newest routed) and the autoscaler's memory after 80 quiet
passes, so the idle revisions sit at zero as on a platform that has run a while. What the pass
reads from Docker and HAProxy, and applies, is not in these figures (see `bench.scale` and the
control plane's `reconcile_pass_slow` lines).

    .venv/bin/python -m bench.passes [--quick] [--sizes 100,500] [--json]
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import Case, Column, bench_arguments, emit, median_ms, progress, size_list
from pipeline.autoscale.scaler import Load
from pipeline.core import names
from pipeline.reconcile.inputs import Memory, Observed, Rules
from pipeline.reconcile.planner import plan
from pipeline.store import db
from pipeline.store.state import Store
from tests.unit.factories import instance

LOADED = 20
RULES = Rules(domain="localhost", readiness_timeout_s=60, grace_s=2, allow_zero=True,
              zero_grace_s=30, freeze=True)  # fmt: skip


def template(*, loaded: bool) -> dict[str, Any]:
    annotations = {"autoscaling.knative.dev/min-scale": "1" if loaded else "0"}
    if not loaded:
        annotations["autoscaling.knative.dev/window"] = "6s"
    container = {"image": "x", "ports": [{"containerPort": 8080}]}
    return {"metadata": {"annotations": annotations}, "spec": {"containers": [container]}}


def filled(store: Store, size: int) -> Observed:
    """N services in the store; what the loop would observe of the loaded ones."""
    instances = []
    for i in range(size):
        loaded = i < LOADED
        name = f"load-{i:02d}" if loaded else f"idle-{i:03d}"
        tpl = template(loaded=loaded)
        spec = {"apiVersion": "serving.knative.dev/v1", "kind": "Service",
                "metadata": {"name": name}, "spec": {"template": tpl}}  # fmt: skip
        store.put_service(name, spec=spec)
        for k in range(1 if loaded else 2):
            rev = store.create_revision(name, image=f"r/{name}@sha256:{k:064d}", template=tpl,
                                        template_hash=str(k))  # fmt: skip
            store.mark_revision(rev.name, status="Ready")
        if loaded:
            rev_name = names.revision_name(name, 1)
            instances.append(instance(rev_name, f"a{i}", address=f"10.0.{i // 250}.{i % 250 + 2}"))
    load = {names.backend_name(i.revision): Load(in_flight=0, requests=5) for i in instances}
    return Observed(instances=tuple(instances), load=load)


def measure(size: int, *, times: int) -> Case:
    with tempfile.TemporaryDirectory() as tmp:
        engine = db.make_engine(f"sqlite:///{Path(tmp) / 'state.db'}")
        db.migrate(engine)
        store = Store(db.session_factory(engine))
        observed = filled(store, size)
        memory = Memory(ready=frozenset(i.id for i in observed.instances))
        now = time.time()
        snapshot = store.snapshot()
        for k in range(80):  # quiet passes: the idle revisions go to zero
            memory = plan(snapshot, observed, memory, now=now - 80 + k, rules=RULES).memory
        read = median_ms(store.snapshot, times=times)
        planned = median_ms(lambda: plan(store.snapshot(), observed, memory, now=now,
                                         rules=RULES), times=times)  # fmt: skip
        engine.dispose()
    return {"name": f"{size} services", "read_ms": round(read, 1),
            "read_and_plan_ms": round(planned, 1)}  # fmt: skip


COLUMNS = [Column("name", "size", "<14"), Column("read_ms", "read ms", ">9.1f"),
           Column("read_and_plan_ms", "read+plan ms", ">14.1f")]  # fmt: skip


def main() -> None:
    parser = bench_arguments(__doc__ or "")
    parser.add_argument("--quick", action="store_true", help="100 and 500 services, 5 times")
    parser.add_argument("--sizes", type=size_list, help="e.g. 10,100,500")
    args = parser.parse_args()
    sizes = args.sizes or ((100, 500) if args.quick else (10, 100, 500, 1000))
    cases = []
    for size in sizes:
        progress(f"{size} services")
        cases.append(measure(size, times=5 if args.quick else 20))
    note = "medians; the store read and planner.plan of a quiet pass, in-process"
    emit(cases, COLUMNS, as_json=args.json, notes=[note])


if __name__ == "__main__":
    main()
