"""The real helm, run on charts/slipway for tests/unit/test_chart.py.

helm is the version pinned in tools/helm/ (go.mod), compiled by `scripts/tools helm` into the shared
tools cache; a machine without it builds it on first use (a few minutes cold), as scripts/test does
before pytest. When it cannot be built the tests fail with scripts/tools' error: a chart test that
silently skipped would leave the chart unchecked.

Values are given the way a user gives them: the chart's own values.yaml (helm reads it), then each
override as its own `-f` file, merged by helm. Rendering targets the Kubernetes version the objects
are then validated against (tests/unit/kubeschemas.py), so `kubeVersion` in Chart.yaml and lint's
deprecation checks see the same version.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.kubeschemas import KUBERNETES_VERSION

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "slipway"
RELEASE = "slipway"
NAMESPACE = "slipway"

Values = Mapping[str, Any]


class HelmFailed(Exception):
    """helm exited non-zero; `stderr` is what it told the user (`Error: ...`)."""

    def __init__(self, args: Sequence[str], done: subprocess.CompletedProcess[str]) -> None:
        super().__init__(f"helm {' '.join(args)} exited {done.returncode}:\n{done.stderr}")
        self.returncode = done.returncode
        self.stdout = done.stdout
        self.stderr = done.stderr


TOOLS = ROOT / "scripts" / "tools"


@functools.cache
def _locate(tools: Path) -> tuple[Path | None, str]:
    """(helm, "") or (None, why not): cached so a failed build is tried once per session."""
    try:
        done = subprocess.run([str(tools), "--dir", "helm"], capture_output=True, text=True,
                              timeout=1200)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, f"{tools} --dir helm: {e}"
    helm = Path(done.stdout.strip()) / "helm"
    if done.returncode != 0 or not os.access(helm, os.X_OK):
        return None, f"{tools} --dir helm exited {done.returncode}:\n{done.stderr}"
    return helm, ""


def helm_binary(tools: Path = TOOLS) -> Path:
    helm, why = _locate(tools)
    if helm is None:
        pytest.fail(f"helm is missing and could not be built; the chart was NOT checked.\n{why}",
                    pytrace=False)  # fmt: skip
    return helm


def run(
    args: Sequence[str], *overrides: Values, chart: Path = CHART
) -> subprocess.CompletedProcess[str]:
    """`helm ARGS CHART -f override1.yaml -f ...` in an empty helm home (no user repositories,
    plugins or kubeconfig can change the result)."""
    helm = helm_binary()
    with tempfile.TemporaryDirectory(prefix="slipway-helm-") as tmp:
        home = Path(tmp)
        files: list[str] = []
        for i, values in enumerate(overrides):
            path = home / f"overrides-{i}.yaml"
            path.write_text(yaml.safe_dump(dict(values)))
            files += ["-f", str(path)]
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": tmp,
            "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_DATA_HOME": str(home / "data"),
            "KUBECONFIG": str(home / "kubeconfig"),
        }
        return subprocess.run([str(helm), *args, str(chart), *files], capture_output=True,
                              text=True, env=env, timeout=120)  # fmt: skip


def template(*overrides: Values) -> list[dict[str, Any]]:
    """The objects `helm template` renders (raises HelmFailed when helm refuses)."""
    args = ["template", RELEASE, "--namespace", NAMESPACE, "--kube-version", KUBERNETES_VERSION]
    done = run(args, *overrides)
    if done.returncode != 0:
        raise HelmFailed(args, done)
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc is not None]


def lint(*overrides: Values) -> subprocess.CompletedProcess[str]:
    """`helm lint --strict` (warnings fail too); the caller asserts on the outcome."""
    return run(["lint", "--strict", "--kube-version", KUBERNETES_VERSION], *overrides)


# `helm template` drops NOTES.txt, and `helm install --dry-run=client` still asks a cluster for its
# version. So the notes are rendered by helm's own engine through `tpl`, from a copy of the chart
# holding the unchanged NOTES.txt as a file and one probe template that prints it as a string.
_PROBE = 'notes: {{ tpl (.Files.Get "NOTES.probe") . | quote }}\n'


def notes(*overrides: Values) -> str:
    """NOTES.txt as helm renders it for these values."""
    with tempfile.TemporaryDirectory(prefix="slipway-chart-") as tmp:
        chart = Path(tmp) / CHART.name
        shutil.copytree(CHART, chart)
        shutil.copyfile(CHART / "templates" / "NOTES.txt", chart / "NOTES.probe")
        (chart / "templates" / "notes-probe.yaml").write_text(_PROBE)
        args = ["template", RELEASE, "--namespace", NAMESPACE, "--kube-version",
                KUBERNETES_VERSION, "--show-only", "templates/notes-probe.yaml"]  # fmt: skip
        done = run(args, *overrides, chart=chart)
    if done.returncode != 0:
        raise HelmFailed(args, done)
    rendered = yaml.safe_load(done.stdout)["notes"]
    assert isinstance(rendered, str)
    return rendered
