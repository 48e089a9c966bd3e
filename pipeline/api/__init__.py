"""The web layer: a thin table of routes over the platform (no domain logic here).

    auth           bearer-token authentication for every call
    views          JSON views of services and revisions, pure
    app            routes under /v1 and the app assembly (mounts the routers below)
    git            smart HTTP git at /git/<svc>.git
    identity       OIDC discovery, JWKS, keys, invokers, user tokens
    sources_route  GET /v1/builds/{id}/source for in-cluster build Jobs
    metrics        /metrics as Prometheus text, pure; metrics_route gathers a scrape
    server         `slipway server`: migrate, wire, start the loops, serve
"""
