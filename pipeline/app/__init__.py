"""The composition root: settings in, a wired platform out.

    platform        builds the store, engine, data plane, builders, deployer and loops, once
    engines         the engine-specific parts (Docker + HAProxy, or Knative + build Jobs)
    certificates    HTTPS on the embedded engine: local CA, ACME issuer, challenge responders
    removals        `services delete`: the service, its builds, repository, images and caches
    restoredimages  at start: push the images a restore staged to the registry
    daemons         helper processes (resolver, metadata server, activator) started once,
                    left running, restarted if they die
    metadataserver  the metadata server's own root: picks the caller lookup, serves
    activatorserver the activator's own root: ask the control plane, else start alone
"""
