"""HAProxy as Slipway's data plane: a pure model, a pure renderer, and the process that applies it."""
