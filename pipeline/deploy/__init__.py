"""Where a build becomes a revision and a revision takes traffic.

    deployer     the facade: source, image or Service YAML in; a ready revision (or a clear
                 failure) out; composes the modules below
    params       what a deploy request asks for (query and JSON body), shared by the CLI and API
    manifests    Commit, Flags, Placement and the pure template edits they make
    buildruns    one build for a deploy: build row, stored source, masked log, queue slot
    rollout      pin secrets, write the service, create the revision, wait for Ready, place it
    edits        traffic split, tags, rollback, access: edits that never make a revision
    garbage      old revisions and their images, collected after a rollout
    locks        one lock per service: deploys and edits to it run one at a time
    urls         a service's URLs as deploys report them, and those that reach one revision
    waits        a Pending revision's instance and its last log line, for progress events
    events       the events a deploy emits while it runs, and the lines people read for them
    waker        what the deployer needs from the reconciler
    gitpush      what a `git push` does to a service, ref by ref (receive-pack's update step)
"""
