"""A small Flask app for Slipway's builder: listens on $PORT (gunicorn, set by slipway/python)."""

import os

from flask import Flask

app = Flask(__name__)


@app.get("/")
def hello() -> str:
    return f"Hello from Flask on {os.environ.get('K_REVISION', 'slipway/builder:bookworm')}!\n"


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=int(os.environ.get("PORT", "8080")))
