"""Where a host gets its certificate, and a custom domain its route: HTTPS and domain mappings.

Decided purely where possible, applied in two places only (the store, and HAProxy through the
data plane). Modules, pure first:

    hosts       which certificate covers a host, who signs it, which hosts a mapping may take
    pems        keys, CSRs, and what a chain says about itself (serial, validity, names)
    renewals    when a certificate is ordered, renewed, retried or forgotten
    localca     the local CA made at first start: certificates for `localhost` and other
                names no public CA signs
    challenges  who answers ACME challenges (HTTP-01 through HAProxy; the DNS-01 hook)
    orders      ACME orders through certbot's `acme` library; renewal information (ARI)
    issuance    the certificates the data plane serves: issued, renewed, kept (a worker thread
                for ACME orders)
    plane       the reconciler's data plane completed with mapped domains and certificates
    trust       the TLS context the CLI trusts: the system's CAs and the local CA
"""
