"""The distributed engine: Slipway services as Knative Services, builds as Kubernetes Jobs.

Selected with `SLIPWAY_ENGINE=knative`. Everything above the engine (API, git, webhooks, builds,
revisions, traffic, identity) is shared with the embedded Docker engine. Modules, pure first:

    render      Slipway service + revisions + traffic -> serving.knative.dev/v1 Service
    istio       private services -> RequestAuthentication + AuthorizationPolicy
    domainmappings  domain mappings -> serving.knative.dev/v1beta1 DomainMapping, kept in sync
    status      Knative status and conditions -> Slipway revision status, URLs
    builds      build request -> BuildKit or CNB `creator` Job (templates in buildtemplates/)
    apply       the Kubernetes API calls (server-side apply), errors translated at the boundary
    engine      KnativeEngine: the ServiceEngine that applies and reads back
    reconciler  KnativeReconciler: the loop that copies status into revision rows
    jobs        ClusterBuilder: runs a build Job, streams its logs, returns the digest
    callers     who is calling the metadata server: source address -> Slipway pod
    logs        the LogReader for `slipway logs`: pods/log of a service's pods
"""
