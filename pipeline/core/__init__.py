"""Slipway's vocabulary: pure values and rules every other package speaks. Imports nothing above it.

    errors       the one error tree (permanent vs retryable), mapped where foreign errors enter
    names        every name derived from a service or revision (hosts, containers, backends, images)
    annotations  every label and annotation key, declared once beside its parser (invokers, ...)
    records      desired state as frozen values: Service, Revision, Build, Snapshot
    revisions    what a revision runs, derived purely from its template
    traffic      edits of a service's traffic block, pure
    settings     platform settings read once from SLIPWAY_* with one-machine defaults
    logs         structlog configuration and the bound logger every module uses
    packagedata  files shipped beside the code (build templates)
"""
