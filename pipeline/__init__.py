"""Slipway: a self-hosted source-to-URL platform (Cloud Run / Knative Serving on one machine)."""

__version__ = "0.1.0"
