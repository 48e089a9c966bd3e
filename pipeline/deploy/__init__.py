"""Where a build becomes a revision and a revision takes traffic.

    deployer     source, image or Service YAML in; a ready revision (or a clear failure) out
    gitpush      what a `git push` does to a service, ref by ref (receive-pack's update step)
"""
