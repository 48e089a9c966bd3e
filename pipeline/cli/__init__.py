"""The `slipway` command: a thin client over the API, plus the long-running subcommands.

    client       HTTP client for the API (used by the CLI, the benches and the tests)
    main         the commands
"""
