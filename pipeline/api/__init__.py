"""The web layer: a thin table of routes over the platform (no domain logic here).

    app            the assembly: the FastAPI app, the platform on its state, routers, errors
    dependencies   how routes reach the platform (`PlatformDep`) and the admin-token check
    auth           bearer-token authentication for every call; the admin token file
    errors         SlipwayError -> HTTP status, in one place; bad query parameters -> 400
    streams        deployments streamed as NDJSON events from a worker thread
    views          JSON views of services, revisions and builds, pure
    services       /v1/services: list, describe, replace, delete
    revisions      /v1/services/{name}/revisions, traffic, rollback
    deployments    /v1/services/{name}/deployments (query: `pipeline.deploy.params`)
    builds         /v1/builds: list, get, cancel, log
    logs           /v1/services/{name}/logs: app and request logs as NDJSON, followed
    secrets        /v1/secrets
    domains        /v1/domainmappings (Knative DomainMapping YAML) and /v1/certificates
    deliveries     /v1/deliveries: webhook deliveries and their outcomes
    git            smart HTTP git at /git/<svc>.git
    identity       OIDC discovery, JWKS, keys, invokers, user tokens
    sources_route  GET /v1/builds/{id}/source for in-cluster build Jobs
    metrics        /metrics as Prometheus text, pure; metrics_route gathers a scrape
    server         `slipway server`: migrate, wire, start the loops, serve
"""
