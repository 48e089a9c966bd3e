"""Build templates: a Dockerfile for sources that bring none (Python, Node, static, Procfile).

`load` reads `buildtemplates/<name>/detect.toml` and `Dockerfile.j2`; everything after that is
pure: `detect` picks the template from the file list, `render` turns the template, a few of the
source's files (`wanted_files`) and the settings into Dockerfile text. The template builder
builds that text like any Dockerfile, from outside the build context (it never lands in the image).
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import jinja2

from pipeline.build.basecatalog import STANDARD_PATH
from pipeline.core.errors import InvalidInput, InvalidSource
from pipeline.core.packagedata import buildtemplates_dir

LOCKFILES = ("package-lock.json", "npm-shrinkwrap.json")
APP_MODULES = ("app.py", "main.py", "wsgi.py", "asgi.py", "server.py")
ASGI = ("FastAPI", "Starlette", "Quart", "Litestar")
WSGI = ("Flask", "Bottle", "Falcon", "App")
_ASSIGNED_APP = re.compile(r"^(\w+)\s*=\s*(?:\w+\.)*(\w+)\(", re.MULTILINE)
_WSGI_FUNCTION = re.compile(r"^def (application|app)\(\s*environ\b", re.MULTILINE)
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True, kw_only=True)
class Template:
    name: str
    description: str
    order: int
    any_of: tuple[str, ...]
    base: str
    text: str  # the jinja2 Dockerfile template


def load(root: Path | None = None) -> list[Template]:
    """Every template under `root` (default: the installed ones), in detection order."""
    root = root or buildtemplates_dir()
    templates = []
    for folder in sorted(p for p in root.iterdir() if (p / "detect.toml").is_file()):
        rules = tomllib.loads((folder / "detect.toml").read_text())
        templates.append(
            Template(
                name=folder.name,
                description=str(rules.get("description", "")),
                order=int(rules.get("order", 100)),
                any_of=tuple(rules.get("any_of", ())),
                base=str(rules["base"]),
                text=(folder / "Dockerfile.j2").read_text(),
            )
        )
    return sorted(templates, key=lambda t: (t.order, t.name))


def detect(templates: Sequence[Template], files: Sequence[str]) -> tuple[Template, str] | None:
    """The first template whose detect rule matches, and the file that matched."""
    present = set(files)
    for template in templates:
        for name in template.any_of:
            if name in present:
                return template, name
    return None


def find(templates: Sequence[Template], name: str) -> Template:
    for template in templates:
        if template.name == name:
            return template
    known = ", ".join(f"template:{t.name}" for t in templates)
    raise InvalidInput(f"unknown build template {name!r}: choose one of {known}")


def wanted_files(files: Sequence[str]) -> list[str]:
    """The few small files `render` reads (manifests, Procfile, candidate app modules)."""
    candidates = ("Procfile", "package.json", "pyproject.toml", "requirements.txt", *APP_MODULES)
    return [f for f in candidates if f in files]


def render(
    template: Template,
    *,
    files: Sequence[str],
    contents: Mapping[str, str],
    base: str = "",
    args: Sequence[str] = (),
    secrets: Sequence[str] = (),
    cache_id: str = "slipway",
) -> str:
    """The Dockerfile for this source. `args`: build arg names the install step may use;
    `secrets`: build secret names it reads from secret mounts; `cache_id`: the prefix of its
    package cache mounts (one per service, see `buildkit.cache_id`)."""
    for name in [*args, *secrets]:
        if not _NAME.fullmatch(name):
            raise InvalidInput(f"build arg name {name!r} is not a valid variable name")
    context: dict[str, object] = {
        "base": base or template.base,
        "args": list(args),
        "secrets": list(secrets),
        "cache_id": cache_id,
        "path": STANDARD_PATH,
        "reason": _matched(template, files),
    }
    if template.name == "python":
        context |= _python(files, contents)
    elif template.name == "node":
        context |= _node(files, contents)
    elif template.name == "procfile":
        context["command"] = _procfile_web(contents, required=True)
    env = jinja2.Environment(
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False
    )
    return env.from_string(template.text).render(context)


def _matched(template: Template, files: Sequence[str]) -> str:
    found = [f for f in template.any_of if f in files]
    return f"{', '.join(found)} found" if found else "chosen explicitly"


def _procfile_web(contents: Mapping[str, str], *, required: bool) -> str:
    if "Procfile" not in contents:
        if required:
            raise InvalidSource("the procfile template needs a Procfile with a `web:` line")
        return ""
    for line in contents["Procfile"].splitlines():
        key, sep, command = line.partition(":")
        if sep and key.strip() == "web" and command.strip():
            return "exec " + command.strip()
    if required or contents["Procfile"].strip():
        raise InvalidSource(
            "the Procfile has no `web:` line: add one that starts the server on $PORT, "
            "e.g. `web: gunicorn --bind 0.0.0.0:$PORT app:app`"
        )
    return ""


def _python(files: Sequence[str], contents: Mapping[str, str]) -> dict[str, object]:
    requirements = "requirements.txt" in files
    declared: list[str] = []
    if requirements:
        declared = [
            line.split("#", 1)[0].strip()
            for line in contents.get("requirements.txt", "").splitlines()
        ]
    elif "pyproject.toml" in contents:
        try:
            project = tomllib.loads(contents["pyproject.toml"]).get("project", {})
        except tomllib.TOMLDecodeError as e:
            raise InvalidSource(f"pyproject.toml does not parse: {e}") from e
        declared = [str(d) for d in project.get("dependencies", [])]
    declared_names = {re.split(r"[\s<>=!~\[;]", d, maxsplit=1)[0].lower() for d in declared if d}
    packages = [] if requirements else [shlex.quote(d) for d in declared if d]
    command = _procfile_web(contents, required=False)
    if not command:
        module, attr, kind = _find_app(contents)
        server = "uvicorn" if kind == "asgi" else "gunicorn"
        if server not in declared_names:
            packages.append(server)
        if kind == "asgi":
            command = f'exec uvicorn {module}:{attr} --host 0.0.0.0 --port "$PORT"'
        else:
            command = f'exec gunicorn --bind "0.0.0.0:$PORT" {module}:{attr}'
    return {"requirements": requirements, "packages": packages, "command": command}


def _find_app(contents: Mapping[str, str]) -> tuple[str, str, str]:
    """(module, attribute, "wsgi" | "asgi") of the first app found in the usual modules."""
    for filename in APP_MODULES:
        text = contents.get(filename)
        if text is None:
            continue
        module = filename.removesuffix(".py")
        for m in _ASSIGNED_APP.finditer(text):
            attr, cls = m.groups()
            if cls in ASGI:
                return module, attr, "asgi"
            if cls in WSGI:
                return module, attr, "wsgi"
        m2 = _WSGI_FUNCTION.search(text)
        if m2:
            return module, m2.group(1), "wsgi"
    raise InvalidSource(
        "no Procfile `web:` line and no WSGI/ASGI app found (looked in "
        f"{', '.join(APP_MODULES)} for `app = Flask(...)`, `app = FastAPI(...)` or "
        "`def application(environ, start_response)`): add a Procfile, e.g. "
        "`web: python app.py`, whose server listens on $PORT"
    )


def _node(files: Sequence[str], contents: Mapping[str, str]) -> dict[str, object]:
    try:
        package = json.loads(contents.get("package.json", "{}"))
    except ValueError as e:
        raise InvalidSource(f"package.json does not parse: {e}") from e
    scripts = package.get("scripts") if isinstance(package, dict) else None
    has_start = isinstance(scripts, dict) and bool(scripts.get("start"))
    if not has_start and "server.js" not in files:
        raise InvalidSource(
            'package.json has no "start" script (and there is no server.js for npm\'s default): '
            'add "scripts": {"start": "node server.js"} with a server on $PORT'
        )
    lockfiles = [f for f in LOCKFILES if f in files]
    install = "npm ci --omit=dev" if lockfiles else "npm install --omit=dev"
    return {"manifests": ["package.json", *lockfiles], "install": install}
