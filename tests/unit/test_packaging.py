"""Slipway as a wheel: what the chart's image installs, built and installed here with the venv's
pip (a real `pip wheel` and `pip install --target`, no Docker).

The wheel must carry every build template and migration, and an installed Slipway must read its
templates from its own package, never from a checkout next to it. The image built from this
wheel is tested in tests/integration/test_image.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from pipeline import __version__
from pipeline.core import packagedata
from pipeline.core.settings import Settings
from tests.unit.installprobe import PROBE

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "buildtemplates"
# What the wheel is built from (the same list as scripts/image): a copy, so the build leaves no
# build/ or egg-info in the checkout and no stale file from an earlier build gets in.
SOURCES = ("pyproject.toml", "README.md", "pipeline", "webhooks", "buildtemplates")
MARKER = "# read from the installed wheel"


def files_under(folder: Path) -> set[str]:
    return {
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = tmp_path_factory.mktemp("source")
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(
                ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__")
            )
        else:
            shutil.copy2(ROOT / name, source / name)
    out = tmp_path_factory.mktemp("wheel")
    # Build isolation (pip's default), not --no-build-isolation: the setuptools pyproject asks
    # for comes from the package index, as in scripts/image and `pip install -e`. The venv's own
    # (65.5 here, from ensurepip) is older and has no bdist_wheel without the `wheel` package.
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(source)])
    (built,) = out.glob("*.whl")
    return built


def run(argv: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=cwd, check=False)
    assert result.returncode == 0, f"{argv[:4]} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_listed_packages_are_the_folders() -> None:
    """pyproject lists packages (discovery cannot map buildtemplates/): none may be missing."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert config["package-dir"] == {"pipeline._buildtemplates": "buildtemplates"}
    folders = {
        ".".join(p.relative_to(ROOT).parts)
        for top in ("pipeline", "webhooks")
        for p in [ROOT / top, *(ROOT / top).rglob("*")]
        if p.is_dir() and "__pycache__" not in p.parts
    }
    templates = {
        ".".join(("pipeline._buildtemplates", *p.relative_to(TEMPLATES).parts))
        for p in [TEMPLATES, *TEMPLATES.rglob("*")]
        if p.is_dir()
    }
    assert sorted(config["packages"]) == sorted(folders | templates)


def test_wheel_carries_code_templates_and_migrations(wheel: Path) -> None:
    assert wheel.name == f"slipway-{__version__}-py3-none-any.whl"
    names = set(zipfile.ZipFile(wheel).namelist())
    templates = {f"pipeline/_buildtemplates/{name}" for name in files_under(TEMPLATES)}
    assert {"README.md", "python/Dockerfile.j2", "kubernetes/buildkit-job.yaml.j2"} <= files_under(
        TEMPLATES
    )
    assert sorted(templates - names) == []
    code = {f"{top}/{name}" for top in ("pipeline", "webhooks") for name in files_under(ROOT / top)}
    assert sorted(code - names) == []
    migrations = {n for n in names if n.startswith("pipeline/store/migrations/versions/")}
    assert "pipeline/store/migrations/env.py" in names
    assert len(migrations) >= 2


def test_installed_wheel_reads_its_own_templates(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "install", "--no-deps", "-q"]
    run([*pip, "--target", str(site), str(wheel)])
    installed = site / "pipeline" / "_buildtemplates"
    # Only this copy says so: a template read from anywhere else lacks the line.
    with (installed / "python" / "Dockerfile.j2").open("a") as f:
        f.write(MARKER + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLIPWAY_")}
    env["PYTHONPATH"] = str(site)  # dependencies still come from the venv
    # cwd outside the checkout: `python -c` puts the cwd first on sys.path.
    probe = json.loads(run([sys.executable, "-c", PROBE], env=env, cwd=tmp_path))
    assert probe["pipeline"] == str(site / "pipeline" / "__init__.py")
    assert probe["root"] == probe["settings"] == str(installed)
    assert probe["jobs"] == str(installed / "kubernetes")
    assert probe["job"] == "Job"
    assert sorted(probe["templates"]) == ["node", "procfile", "python", "static"]
    assert probe["templates"]["python"].endswith(MARKER + "\n")


def test_a_checkout_reads_its_own_folder_and_the_setting_overrides(tmp_path: Path) -> None:
    assert packagedata.buildtemplates_dir() == TEMPLATES
    assert Settings.from_env({}).buildtemplates_dir == TEMPLATES
    override = Settings.from_env({"SLIPWAY_BUILDTEMPLATES": str(tmp_path)})
    assert override.buildtemplates_dir == tmp_path
