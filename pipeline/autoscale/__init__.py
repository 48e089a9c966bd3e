"""How many instances a revision wants: Knative's KPA, on HAProxy's counters.

    kpa          the KPA decision, pure: samples in, desired scale out
    scaler       the autoscaler's memory per revision (samples, KPA state), folded pass by pass
    freezing     the tier below running: which idle instance freezes, thaws or stops (pure)
"""
