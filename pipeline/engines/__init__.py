"""Runtime engines: where instances run. The Docker engine is here; the Knative engine is
`pipeline.knative`.

    base          the engine interfaces the reconcilers drive
    dockerclient  the one place a Docker Engine client is made
    docker        instances as containers on a Slipway-owned Docker bridge network
    logs          app log lines, the time grammar, the merge, the LogReader protocol (pure)
    logstreams    a service's logs through a LogReader: merged history, then follow
    dockerlogs    the Docker engine's LogReader: instance containers' stdout and stderr
"""
