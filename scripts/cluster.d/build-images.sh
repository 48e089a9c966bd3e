# Sourced by scripts/cluster (`up`, and `build-images` alone): the images the Knative engine's
# in-cluster build Jobs run, pushed to $REG under slipway/ (pipeline/knative/builds.py names them
# the same way; SLIPWAY_BUILDKIT_IMAGE etc. override them in Slipway):
#
#   slipway/buildkit:<v>            buildkitd, buildctl, rootlesskit (scripts/tools buildkit) and
#                                   Debian's runc + uidmap on slipway/debian:bookworm, user 1000
#   slipway/busybox:1.35-bookworm   the source fetch (wget, tar); also a base image for Dockerfiles
#   slipway/builder:bookworm        Slipway's CNB builder (scripts/builder): the creator Job
#   slipway/cnb-run:bookworm        its run image, which the creator pulls in the pod
#
# Cached: an image is pushed again only when its local image ID differs from the one last
# pushed (stamps in $S/build-images/) or the registry lacks it. Images made elsewhere
# (scripts/builder, pipeline.build.baseimages) are made here only when a virtualenv with Slipway
# is at hand; otherwise `up` says what to run and goes on (Dockerfile builds still work).

BUILD_IMAGES_STAMPS="$S/build-images"

registry_has() { # repo tag
  curl -fsS -o /dev/null -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
    "http://$REG/v2/$1/manifests/$2" 2>/dev/null
}
push_local_image() { # local-ref (slipway/<name>:<tag>): tag it under $REG and push, if changed
  local src="$1" id stamp ref started
  id="$(docker image inspect -f '{{.Id}}' "$src" 2>/dev/null)" || return 1
  ref="$REG/$src"; stamp="$BUILD_IMAGES_STAMPS/$(echo "$src" | tr '/:' '__')"
  if [ "$(cat "$stamp" 2>/dev/null)" = "$id" ] && registry_has "${src%:*}" "${src##*:}"; then
    return 0
  fi
  say "build image $ref"
  started=$(date +%s)
  docker tag "$src" "$ref"
  docker push -q "$ref" >/dev/null || die "could not push $ref"
  mkdir -p "$BUILD_IMAGES_STAMPS"; echo "$id" >"$stamp"
  echo "$(date -u +%FT%TZ) pushed $ref in $(($(date +%s) - started))s" >>"$S/timings"
}
make_buildkit_image() { # -> slipway/buildkit:<version> in the local Docker Engine
  local bin ver ref ctx content runc_bin
  bin="$("$ROOT/scripts/tools" --dir buildkit)" || die "scripts/tools could not build buildkit"
  ver="$(basename "$(dirname "$bin")")"; ver="${ver#buildkit-}"
  ref="slipway/buildkit:$ver"
  runc_bin="$(command -v runc)" || die "runc is not installed (apt-get install runc)"
  docker image inspect slipway/debian:bookworm >/dev/null 2>&1 || make_base_image slipway/debian:bookworm ||
    die "the BuildKit image starts from slipway/debian:bookworm, which is missing: run scripts/builder (or python -m pipeline.build.baseimages slipway/debian:bookworm)"
  content="$( { sha256sum "$bin/buildkitd" "$bin/buildctl" "$bin/rootlesskit" "$runc_bin" | cut -c1-64;
               docker image inspect -f '{{.Id}}' slipway/debian:bookworm; buildkit_dockerfile; } |
             sha256sum | cut -c1-32)"
  [ "$(docker image inspect -f '{{index .Config.Labels "dev.slipway.content"}}' "$ref" 2>/dev/null)" = "$content" ] &&
    { echo "$ref"; return 0; }
  ctx="$(mktemp -d)"
  cp "$bin/buildkitd" "$bin/buildctl" "$bin/rootlesskit" "$runc_bin" "$ctx/"
  { buildkit_dockerfile; echo "LABEL dev.slipway.content=$content"; } >"$ctx/Dockerfile"
  say "image $ref (buildkitd, buildctl $ver, rootlesskit; runc $("$runc_bin" --version | head -1 | cut -d' ' -f3))"
  DOCKER_BUILDKIT=0 docker build -q -t "$ref" "$ctx" >"$ctx/log" 2>&1 ||
    { cat "$ctx/log" >&2; rm -rf "$ctx"; die "could not build $ref"; }
  rm -rf "$ctx"
  echo "$ref"
}
# As upstream's rootless image: user 1000 with a subordinate id range and newuidmap/newgidmap
# (Debian's uidmap, setuid) for rootlesskit's user namespace. runc links libseccomp.so.2 and
# glibc, which bookworm's minbase has (apt needs libseccomp). apt goes through the host's proxy
# with the CA bundle slipway/debian:bookworm carries.
buildkit_dockerfile() {
  cat <<'EOF'
FROM slipway/debian:bookworm
RUN apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends uidmap \
 && apt-get clean && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 1000 --create-home --shell /bin/sh user \
 && echo user:100000:65536 >/etc/subuid && echo user:100000:65536 >/etc/subgid \
 && mkdir -p /run/user/1000 /home/user/.local/tmp /home/user/.local/share/buildkit \
 && chown -R user /run/user/1000 /home/user
COPY buildkitd buildctl rootlesskit runc /usr/local/bin/
ENV HOME=/home/user USER=user XDG_RUNTIME_DIR=/run/user/1000 TMPDIR=/home/user/.local/tmp \
    BUILDKIT_HOST=unix:///run/user/1000/buildkit/buildkitd.sock
USER 1000:1000
ENTRYPOINT ["rootlesskit", "buildkitd"]
EOF
}
make_base_image() { # ref: with the work tree's virtualenv, as scripts/builder does
  [ -x "$ROOT/.venv/bin/python" ] || return 1
  say "making $1 (debootstrap; first run only)"
  (cd "$ROOT" && "$ROOT/.venv/bin/python" -m pipeline.build.baseimages "$1") >&2
}
build_images_for_builds() {
  local t0 ref; t0=$(date +%s)
  ref="$(make_buildkit_image)"
  push_local_image "$ref"
  docker image inspect slipway/busybox:1.35-bookworm >/dev/null 2>&1 || make_base_image slipway/busybox:1.35-bookworm || true
  push_local_image slipway/busybox:1.35-bookworm ||
    warn "no slipway/busybox:1.35-bookworm here: build Jobs cannot fetch sources (run python -m pipeline.build.baseimages slipway/busybox:1.35-bookworm)"
  for ref in slipway/builder:bookworm slipway/cnb-run:bookworm; do
    push_local_image "$ref" ||
      warn "no $ref here: in-cluster buildpacks builds need it (run scripts/builder, then scripts/cluster up)"
  done
  echo "$(date -u +%FT%TZ) build images ${REG} $(($(date +%s) - t0))s" >>"$S/timings"
}

# Build pods reach the host at the pod network's gateway, not at 127.0.0.1 (their own). With a
# registry on the host's loopback, a forwarder on $POD_GW:<port> gives them the same registry:
# Jobs push to $POD_GW:<port>/..., the node pulls the digest back as $REG/... (Slipway's
# SLIPWAY_BUILD_REGISTRY / SLIPWAY_REGISTRY). The bridge is made here with the gateway address
# the CNI bridge plugin would give it (it keeps an existing bridge and address).
pods_registry() { echo "$POD_GW:${REG##*:}"; }
forward_registry_to_pods() {
  case "$REG" in 127.0.0.1:*|localhost:*) ;; *) return 0 ;; esac
  ip link show "$CNI_BRIDGE" >/dev/null 2>&1 || ip link add "$CNI_BRIDGE" type bridge
  ip -4 addr show dev "$CNI_BRIDGE" | grep -q "inet $POD_GW/" ||
    ip addr add "$POD_GW/${NODE_POD_CIDR#*/}" dev "$CNI_BRIDGE"
  ip link set "$CNI_BRIDGE" up
  start registry-pods socat "TCP-LISTEN:${REG##*:},bind=$POD_GW,fork,reuseaddr" "TCP:$REG"
  wait_for registry-pods 10 curl -fsS -o /dev/null "http://$(pods_registry)/v2/" || fail_log registry-pods
}
