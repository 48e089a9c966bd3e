"""Where desired state becomes running instances and routes, level-triggered.

routing      desired state -> routes, scale and the data plane's model (pure)
probes       readiness probes: TCP connect on $PORT or an HTTP GET
loop         the embedded engine's reconciler: store -> containers -> HAProxy
"""
