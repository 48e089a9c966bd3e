"""The loop's JWT policy provider: key files are read (and pruned) only when they can have
changed, not on every reconcile pass."""

from __future__ import annotations

from pathlib import Path

from pipeline.identity import keys
from pipeline.reconcile.policies import KeyPolicy


class CountingKeys(keys.KeyStore):
    def __init__(self, directory: Path) -> None:
        super().__init__(directory, clock=lambda: 1_700_000_000)
        self.reads = 0

    def prune(self) -> list[str]:
        self.reads += 1
        return super().prune()


def test_the_policy_is_read_again_only_after_a_key_change_or_max_age(tmp_path: Path) -> None:
    store = CountingKeys(tmp_path / "keys")
    first = store.ensure()
    now = [0.0]
    policy = KeyPolicy(keys=store, issuer="http://localhost:8080", clock=lambda: now[0])

    assert [kid for kid, _ in policy().keys] == [first.kid]
    for _ in range(5):  # passes: nothing changed on disk
        now[0] += 1
        policy()
    assert store.reads == 1

    second = store.rotate()  # `keys rotate`: the next pass must hand HAProxy the new kid
    assert {kid for kid, _ in policy().keys} == {first.kid, second.kid}
    assert store.reads == 2

    now[0] += 60  # a key retires by the clock alone: read again after max_age_s
    policy()
    assert store.reads == 3
