"""HAProxy as Slipway's data plane: a pure model, a pure renderer, the process applying it."""
