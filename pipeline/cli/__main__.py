"""`python -m pipeline.cli`: the same as the `slipway` command."""

from pipeline.cli.main import main

main()
