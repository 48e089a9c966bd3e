"""What an installed Slipway reports about itself, run as `python -c PROBE` in a fresh
interpreter whose only Slipway is the installed one (a `pip install --target` folder in
tests/unit/test_packaging.py, the control-plane image in tests/integration/test_image.py).

It prints JSON: where `pipeline` was imported from, where each of the three users of the build
templates (buildtemplates.load, Settings, the Knative Job renderer) found them, and the templates
read. It also imports the server's modules, so a dependency missing from the install fails here.
"""

from __future__ import annotations

PROBE = """
import json
import pipeline
import pipeline.api.app, pipeline.app.platform, pipeline.cli.main, pipeline.app.engines
import webhooks.routes
from pipeline.build import templates as buildtemplates
from pipeline.core import packagedata
from pipeline.core.settings import Settings
from pipeline.knative.builds import ClusterBuildSettings, render_build_job

settings = ClusterBuildSettings(namespace="apps", platform="prod", registry="127.0.0.1:5000")
job = render_build_job(
    kind="buildkit", build_id="3f9a61c2d0e4", service="hello",
    destination="registry.example.com/hello:build-3f9a61c2d0e4",
    source_url="http://slipway:8081/v1/builds/3f9a61c2d0e4/source", source_token="t",
    settings=settings,
)
print(json.dumps({
    "pipeline": pipeline.__file__,
    "root": str(packagedata.buildtemplates_dir()),
    "settings": str(Settings.from_env({}).buildtemplates_dir),
    "jobs": str(settings.templates),
    "job": job["kind"],
    "templates": {t.name: t.text for t in buildtemplates.load()},
}))
"""
