"""The web layer: a thin table of routes over the platform (no domain logic here)."""
