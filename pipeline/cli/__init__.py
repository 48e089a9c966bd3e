"""The `slipway` command: a thin client over the API, plus the long-running subcommands.

    client       HTTP client for the API (used by the CLI, the benches and the tests)
    output       consoles, `error:` and exit 1, API calls, the deployment event stream, traffic
    formats      `-o table|json|yaml` for lists and describe; tables whole when piped
    envfiles     the `--env-file` grammar (comments, `export `, quotes)
    deployments  `deploy`: options to DeployParams, the source as the body
    traffic      `traffic` and `rollback`
    services     `services list|describe|delete|replace`
    identity     invokers (`services add-invoker|remove-invoker`), `keys`, `auth`
    revisions    `revisions list`
    builds       `builds list|cancel|log`
    logs         `logs`: app logs or request logs, merged, followed
    secrets      `secrets set|list|delete`
    domains      `domains map|unmap|list|replace|certs|renew`; the TLS part of `describe`
    images       `images ensure`: base images from the OS package archive
    servers      `server`, and the hidden `dns`, `metadata` and `activator` it starts
    backups      `backup` and `restore`, on the Slipway machine (the data dir directly)
    main         the table of commands and groups; `slipway` and `python -m pipeline.cli.main`
"""
