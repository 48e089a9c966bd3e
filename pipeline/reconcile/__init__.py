"""Where desired state becomes running instances and routes, level-triggered.

routing      desired state -> routes, scale and the data plane's model (pure)
inputs       what a pass decides from: Observed, Memory, Rules (values)
actions      what a pass decided: the Plan and its actions (values)
statuses     Pending revisions -> Ready or Failed marks (pure)
healing      crash-loop back-off, recovery, instances HAProxy holds down (pure)
scaling      instances per revision (autoscaler included) -> starts, drains, collection (pure)
rejections   routes HAProxy could not take -> left out, a condition on their revisions (pure)
planner      plan(snapshot, observed, memory, now, rules) -> Plan: the phases in order (pure)
probes       readiness probes: TCP connect on $PORT or an HTTP GET
stops        instance stops on worker threads, each waiting out its grace period
thaws        the activator's thaw of a frozen instance, claimed against a pass stopping it
appliers     carry a Plan out: store, engine, HAProxy, in a fixed order
policies     the JWT policy for HAProxy, re-read only when the key files can have changed
loop         the embedded engine's reconciler: read -> plan -> apply, once per pass
"""
