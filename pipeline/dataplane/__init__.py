"""Where a request finds an instance: HAProxy as Slipway's data plane, and what stands beside it.

    model        the data plane's desired state, as plain values
    jwt          the identity check of private services, as HAProxy rules (pure)
    checks       what may enter the config: bad routes sifted out, the rest checked (pure)
    render       the model as haproxy.cfg text (pure)
    tlsrender    HTTPS in that text: the TLS listener, ACME challenges, the redirect (pure)
    runtime      HAProxy's runtime API (admin and master sockets)
    changes      the runtime commands that bring a running HAProxy to a plane (pure)
    tlschanges   the same for its certificates: ssl cert transactions, crt-list (pure)
    tlssync      certificate files for a reload, and those commands for the running worker
    mapsync      the routes and invokers map files, and `set/add/del map` for the running worker
    challenges   ACME HTTP-01 tokens HAProxy answers itself, from a map changed at runtime
    procs        the master's `show proc`: current worker, refused reloads, old workers (pure)
    process      run HAProxy and bring it to a rendered plane: start, reload, runtime changes
    drains       what the reconciler asks HAProxy: may a draining instance stop
    requestlogs  HAProxy's line per request, into a bounded ring per service
    desiredcache what the control plane last wanted, kept for the activator (written per change)
    wakeups      the activator asks the control plane for an instance, on a 0600 unix socket
    lonestarts   the activator alone while the control plane is down: use, thaw or start
    activator    where a request goes when its revision has no instance that can take it
    activationcounts  what the activator logs of them: a line per wake-up, then counts
    resolver     the DNS resolver instances use: `<anything>.<domain>` is the internal listener
"""
