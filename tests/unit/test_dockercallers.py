"""The metadata server's caller index (identity.dockercallers): a known address is answered after
re-reading only its containers, and every doubt lists everything again, so an address's previous
owner is never named. The listing is a list of entries shaped as dockerd's `GET
/containers/json` returns them, standing in for dockerd (tests/security/test_sandbox_identity.py
runs the same index against the real one)."""

from __future__ import annotations

import docker.errors
import pytest

from pipeline.core import names
from pipeline.core.errors import Unavailable
from pipeline.engines import sandboxes
from pipeline.engines.dockerlist import Entry
from pipeline.identity.callers import Caller
from pipeline.identity.dockercallers import CallerIndex, callers_by_address

NET = "slipway"


def entry(ident: str, *, state: str = "running", ip: str = "", **labels: str) -> Entry:
    nets = {NET: {"IPAddress": ip}} if ip else {}
    return {"Id": ident, "Names": [f"/c-{ident}"], "State": state, "Labels": labels,
            "NetworkSettings": {"Networks": nets}}  # fmt: skip


def sandbox(ident: str, *, ip: str, state: str = "running") -> Entry:
    return entry(ident, state=state, ip=ip, **{sandboxes.LABEL_ROLE: sandboxes.ROLE_SANDBOX})


def app(ident: str, service: str, *, ip: str = "", sandbox_id: str = "", state: str = "running"
        ) -> Entry:  # fmt: skip
    labels = {names.LABEL_SERVICE: service, names.LABEL_REVISION: f"{service}-00001",
              names.LABEL_INSTANCE: f"{service}-i"}  # fmt: skip
    if sandbox_id:
        labels[sandboxes.LABEL_SANDBOX] = sandbox_id
    return entry(ident, state=state, ip=ip, **labels)


def caller(service: str) -> Caller:
    return Caller(service=service, revision=f"{service}-00001", instance=f"{service}-i")


class Dockerd:
    """What dockerd would list now; records every call (None: a full listing)."""

    def __init__(self, *listed: Entry) -> None:
        self.listed = list(listed)
        self.calls: list[list[str] | None] = []

    def __call__(self, ids: list[str] | None) -> list[Entry]:
        self.calls.append(ids)
        return [e for e in self.listed if ids is None or e["Id"] in ids]


def test_a_known_address_is_confirmed_by_reading_only_its_containers() -> None:
    dockerd = Dockerd(sandbox("sb", ip="172.30.0.5"), app("a", "web", sandbox_id="sb"),
                      app("b", "api", ip="172.30.0.9"))  # fmt: skip
    index = CallerIndex(dockerd, network=NET)
    assert index("172.30.0.5") == caller("web")
    assert index("172.30.0.5") == caller("web")
    assert index("172.30.0.9") == caller("api")
    assert dockerd.calls == [None, ["a", "sb"], ["b"]]
    assert index.full_listings == 1


def test_an_address_taken_over_by_another_instance_is_never_its_previous_owners() -> None:
    dockerd = Dockerd(app("a", "web", ip="172.30.0.5"))
    index = CallerIndex(dockerd, network=NET)
    assert index("172.30.0.5") == caller("web")
    # "a" is removed and "b" starts on the freed address before anything tells the index.
    dockerd.listed = [app("b", "api", ip="172.30.0.5")]
    assert index("172.30.0.5") == caller("api")
    assert dockerd.calls[-2:] == [["a"], None]


@pytest.mark.parametrize(
    "now",
    [
        pytest.param([app("a", "web", ip="172.30.0.5", state="exited")], id="stopped"),
        pytest.param([app("a", "web", ip="172.30.0.6")], id="moved"),
        pytest.param([app("a", "web", sandbox_id="sb")], id="sandbox-removed"),
        pytest.param(
            [sandbox("sb", ip="172.30.0.5"), app("a", "web", sandbox_id="sb")],
            id="joined-a-sandbox-on-the-same-address",
        ),
    ],
)
def test_a_changed_container_is_not_confirmed_and_the_full_listing_decides(
    now: list[Entry],
) -> None:
    dockerd = Dockerd(app("a", "web", ip="172.30.0.5"))
    index = CallerIndex(dockerd, network=NET)
    assert index("172.30.0.5") == caller("web")
    dockerd.listed = now
    expected = caller("web") if "sb" in {e["Id"] for e in now} else None
    assert index("172.30.0.5") == expected
    assert dockerd.calls[-1] is None, "a container that changed was trusted without a listing"
    assert index.full_listings == 2


def test_a_stranger_lists_every_time_and_stays_nobody() -> None:
    dockerd = Dockerd(app("a", "web", ip="172.30.0.5"), sandbox("spare", ip="172.30.0.7"))
    index = CallerIndex(dockerd, network=NET)
    assert index("172.30.0.7") is None, "a spare sandbox was taken for a caller"
    assert index("10.0.0.1") is None
    assert dockerd.calls == [None, None]


def test_an_address_claimed_twice_is_nobodys() -> None:
    listed = [app("a", "web", ip="172.30.0.5"), app("b", "api", ip="172.30.0.5"),
              app("c", "db", ip="172.30.0.6")]  # fmt: skip
    assert set(callers_by_address(listed, network=NET)) == {"172.30.0.6"}


def test_an_instance_without_a_service_label_or_not_running_is_nobody() -> None:
    listed = [entry("x", ip="172.30.0.5"), app("a", "web", ip="172.30.0.6", state="created")]
    assert callers_by_address(listed, network=NET) == {}


def test_dockerd_unreachable_is_unavailable_not_a_stranger() -> None:
    def down(ids: list[str] | None) -> list[Entry]:
        raise docker.errors.APIError("dockerd is restarting")

    with pytest.raises(Unavailable, match="cannot list containers"):
        CallerIndex(down, network=NET)("172.30.0.5")
