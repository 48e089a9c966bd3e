"""Hello world with Flask: the python build template installs requirements.txt and runs
`gunicorn app:app` on $PORT (no Dockerfile needed)."""

import os

from flask import Flask

app = Flask(__name__)


@app.get("/")
def hello() -> str:
    return f"Hello from {os.environ.get('K_REVISION', 'somewhere')} (Flask)!\n"
