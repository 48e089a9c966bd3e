"""Runtime engines: where instances run. The Docker engine is here; the Knative engine is
`pipeline.knative`.

    base          the engine interfaces the reconcilers drive
    dockerclient  the one place a Docker Engine client is made
    docker        instances as containers on a Slipway-owned Docker bridge network
"""
