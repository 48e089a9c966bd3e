"""Runtime engines: where instances run. `docker` (embedded) now; `knative` later."""
