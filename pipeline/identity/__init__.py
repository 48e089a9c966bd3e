"""Service identity: signing keys, identity tokens, the metadata server, invoker lists."""
