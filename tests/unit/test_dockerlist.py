"""Reading a container listing: an instance in a sandbox answers on its sandbox's address, one
whose sandbox is gone is reported exited, and spares no container names are found for adoption.
Entries shaped as dockerd's `GET /containers/json` returns them."""

from __future__ import annotations

from pipeline.core import names
from pipeline.engines import dockerlist, sandboxes
from pipeline.engines.dockerlist import Entry

NET = "slipway"


def entry(ident: str, *, state: str = "running", ip: str = "", **labels: str) -> Entry:
    nets = {NET: {"IPAddress": ip}} if ip else {}
    return {"Id": ident, "Names": [f"/c-{ident}"], "State": state, "Labels": labels,
            "NetworkSettings": {"Networks": nets}}  # fmt: skip


def sandbox(ident: str, *, state: str = "running", ip: str = "", dns: str = "") -> Entry:
    return entry(ident, state=state, ip=ip, **{
        sandboxes.LABEL_ROLE: sandboxes.ROLE_SANDBOX, sandboxes.LABEL_DNS: dns,
    })  # fmt: skip


def app(ident: str, *, sandbox_id: str = "", state: str = "running", ip: str = "") -> Entry:
    labels = {names.LABEL_SERVICE: "web", names.LABEL_REVISION: "web-00001"}
    if sandbox_id:
        labels[sandboxes.LABEL_SANDBOX] = sandbox_id
    return entry(ident, state=state, ip=ip, **labels)


def test_an_instance_in_a_sandbox_has_the_sandboxs_address() -> None:
    listed = [sandbox("sb", ip="172.30.0.5"), app("a", sandbox_id="sb")]
    found = dockerlist.live_instance(listed[1], dockerlist.sandboxes_of(listed), network=NET)
    assert (found.address, found.running, found.revision) == ("172.30.0.5", True, "web-00001")
    assert found.name == "c-a"


def test_an_instance_on_the_network_has_its_own_address_and_a_paused_one_is_frozen() -> None:
    listed = [app("a", ip="172.30.0.9", state="paused")]
    found = dockerlist.live_instance(listed[0], dockerlist.sandboxes_of(listed), network=NET)
    assert (found.address, found.running, found.frozen) == ("172.30.0.9", True, True)


def test_an_instance_whose_sandbox_is_gone_or_stopped_is_reported_exited() -> None:
    for listed in (
        [app("a", sandbox_id="sb")],
        [sandbox("sb", ip="172.30.0.5", state="exited"), app("a", sandbox_id="sb")],
    ):
        found = dockerlist.live_instance(listed[-1], dockerlist.sandboxes_of(listed), network=NET)
        assert (found.address, found.running, found.frozen) == ("", False, False)
        assert found.exit_code == -1 and found.error == "its network sandbox sb is gone"


def test_spares_left_are_the_sandboxes_no_container_names() -> None:
    listed = [sandbox("used", dns="10.0.0.1"), sandbox("spare", dns="10.0.0.2"),
              app("a", sandbox_id="used"), app("b", ip="172.30.0.9")]  # fmt: skip
    assert dockerlist.spares_left(listed) == {"spare": "10.0.0.2"}
    assert sorted(dockerlist.sandboxes_of(listed)) == ["spare", "used"]
    assert dockerlist.named_sandboxes(listed) == ["", "", "used", ""]


def test_live_instances_leave_out_sandboxes_and_stopped_containers() -> None:
    listed = [sandbox("sb", ip="172.30.0.5"), app("a", sandbox_id="sb"),
              app("b", ip="172.30.0.9", state="paused"), app("c", state="exited")]  # fmt: skip
    live = dockerlist.live_instances(listed, network=NET)
    assert [(e["Id"], i.address, i.frozen) for e, i in live] == [
        ("a", "172.30.0.5", False), ("b", "172.30.0.9", True),
    ]  # fmt: skip
