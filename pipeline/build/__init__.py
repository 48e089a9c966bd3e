"""Where a source becomes an image: choosing a builder, running it, pushing the result.

    sources      source archives: packed by the CLI, checked and kept by the control plane
    gitsources   clone a repository at one commit into a source archive
    sourcetokens short-lived tokens that let one in-cluster build Job fetch its own source
    builders     which builder turns a source into an image; what every builder is given
    templates    build templates: detect rules + Dockerfile for sources that bring none
    basecatalog  Slipway's base images: references, contents, image config
    rootfs       their root filesystems: the busybox and debootstrap recipes
    baseimages   make the missing ones (`docker import`); `python -m pipeline.build.baseimages`
    queue        at most N builds at once, the rest wait in order
    processes    build processes: run, stream, cancel, time out
    logfiles     build logs on disk, read whole or followed
    dockerfile   Dockerfile and template builds on the Docker Engine (BuildKit), then the push
    preflight    checks on a Dockerfile's text before the build (base images, secrets as ARG)
    contexts     files read from a source archive; the context folder a build runs in
    buildkit     which docker CLI builds with BuildKit, its argv and env, failure messages
    progress     BuildKit's plain progress turned into the build log's lines
    buildpacks   Cloud Native Buildpacks through the real `pack`, then the push
    packerrors   what a failed `pack build` means, in words that name the fix
    registry     image references and the registry's HTTP API
    imagecopy    images copied byte for byte between the registry and a backup archive
"""
