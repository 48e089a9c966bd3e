"""Where a token is minted and checked: service identity.

keys           RS256 signing keys, one `kid` each, rotation
tokens         identity tokens: claims and the signed JWT
access         who may call a service: the private/invokers annotations, read and edited
callers        the Caller a source address stands for, and the CallerLookup Protocol
dockercallers  who is calling, next to Docker: source address -> owned instance
metadata       the metadata server instances reach at $GCE_METADATA_HOST
connections    the metadata server's connections, bounded in time and number per caller
"""
