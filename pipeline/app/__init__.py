"""The composition root: settings in, a wired platform out.

    platform     builds the store, engine, data plane, builders, deployer and loops, once
    daemons      helper processes (resolver, metadata server) started once, left running
"""
