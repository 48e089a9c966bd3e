# Shared by scripts/up, scripts/down and scripts/test: install what is missing, start what is
# not running. Every function is safe to call again.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SLIPWAY_VENV:-$ROOT/.venv}"
if [ "$(id -u)" = 0 ]; then DEFAULT_DATA=/var/lib/slipway; else DEFAULT_DATA="$HOME/.local/share/slipway"; fi
export SLIPWAY_DATA_DIR="${SLIPWAY_DATA_DIR:-$DEFAULT_DATA}"
export SLIPWAY_PORT="${SLIPWAY_PORT:-8080}"
export SLIPWAY_API_PORT="${SLIPWAY_API_PORT:-8081}"
export SLIPWAY_REGISTRY="${SLIPWAY_REGISTRY:-127.0.0.1:5000}"
RUN="$SLIPWAY_DATA_DIR/run"
LOGS="$SLIPWAY_DATA_DIR/logs"

say() { printf '\033[1m==>\033[0m %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
warn() { printf 'warning: %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@";
  else die "need root for: $* (run as root or install sudo)"; fi
}

APT_UPDATED=0
apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  say "installing ${missing[*]}"
  if [ "$APT_UPDATED" = 0 ]; then as_root apt-get update -q >/dev/null; APT_UPDATED=1; fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    "${missing[@]}" >/dev/null
}

registry_is_local() { case "$SLIPWAY_REGISTRY" in 127.0.0.1:*|localhost:*) return 0;; *) return 1;; esac; }

install_system() {
  # Extra packages (e.g. postgresql for the tests) come as arguments.
  local pkgs=(haproxy git curl ca-certificates debootstrap busybox-static iptables "$@")
  docker_answers || command -v dockerd >/dev/null || pkgs+=(docker.io)
  registry_is_local && pkgs+=(docker-registry)
  apt_install "${pkgs[@]}"
}

find_python() {
  for py in python3.13 python3.12 python3.11 python3; do
    if command -v "$py" >/dev/null && "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "$py"; return 0
    fi
  done
  return 1
}

install_venv() {
  local py
  py="$(find_python)" || { apt_install python3 python3-venv; py="$(find_python)" || {
    apt_install python3.11 python3.11-venv; py=python3.11; }; }
  if ! "$py" -c 'import venv, ensurepip' 2>/dev/null; then
    apt_install "python3-venv" || true
    local v; v="$("$py" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
    "$py" -c 'import ensurepip' 2>/dev/null || apt_install "python$v-venv"
  fi
  [ -x "$VENV/bin/python" ] || "$py" -m venv "$VENV"
  # Reinstall only when the dependency list changed.
  local stamp="$VENV/.slipway-deps" want
  want="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    say "installing Slipway into $VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
    "$VENV/bin/python" -m pip install -q -e "$ROOT[dev]"
    echo "$want" >"$stamp"
  fi
}

# Cloud Native Buildpacks: pack and the CNB lifecycle, built from source at their pinned versions
# by scripts/tools into its cache (/var/cache/slipway/tools; only the first run compiles), then
# Slipway's builder image slipway/builder:bookworm by scripts/builder (idempotent: it remakes
# only what changed, and makes slipway/debian:bookworm first if it is missing). The control plane
# finds pack in that cache (SLIPWAY_PACK overrides).
install_buildpacks() {
  say "pack and the CNB lifecycle (compiled on the first run), then Slipway's builder image"
  "$ROOT/scripts/tools" pack lifecycle >/dev/null
  SLIPWAY_VENV="$VENV" "$ROOT/scripts/builder"
}

docker_answers() { docker info >/dev/null 2>&1; }

# The data dir holds the database (with --env values), sources, repositories, keys and logs:
# its owner's alone (the control plane keeps it so too). The processes started here get umask
# 077, so their files (logs, pid files, registry storage) are private as well; the umask is set
# per process, not for these scripts, which also make the venv and base images for everyone.
# What an older version left readable, the control plane tightens when it starts.
private_dirs() {
  (umask 077 && mkdir -p "$SLIPWAY_DATA_DIR" "$RUN" "$LOGS")
  chmod 700 "$SLIPWAY_DATA_DIR" "$RUN" "$LOGS"
}

private_pid() { # file, pid: the pid file, 0600
  (umask 077 && rm -f "$1" && echo "$2" >"$1")
}

start_dockerd() {
  docker_answers && return 0
  command -v dockerd >/dev/null || die "no Docker Engine answers and dockerd is not installed"
  private_dirs
  say "starting dockerd"
  (umask 077 && : >"$LOGS/dockerd.log")  # created private; dockerd (root) only writes it
  # --live-restore: instances keep running while dockerd restarts (an upgrade, a crash), so
  # services keep serving through it. Not passed when daemon.json sets it already: dockerd
  # refuses a directive given both ways.
  local live_restore=--live-restore
  grep -qs '"live-restore"' /etc/docker/daemon.json && live_restore=
  as_root nohup dockerd $live_restore >"$LOGS/dockerd.log" 2>&1 &
  private_pid "$RUN/dockerd.pid" $!
  for _ in $(seq 1 60); do docker_answers && return 0; sleep 0.5; done
  tail -20 "$LOGS/dockerd.log" >&2
  die "dockerd did not come up; its log is $LOGS/dockerd.log"
}

pid_alive() { [ -f "$1" ] && kill -0 "$(cut -d' ' -f1 "$1")" 2>/dev/null; }

wait_http() { # url, what, seconds
  for _ in $(seq 1 $(( ${3:-30} * 4 ))); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.25
  done
  return 1
}

start_registry() {
  registry_is_local || return 0
  local cfg="$SLIPWAY_DATA_DIR/registry.yml" addr="$SLIPWAY_REGISTRY"
  curl -fsS -o /dev/null "http://$addr/v2/" 2>/dev/null && return 0
  private_dirs
  (umask 077 && mkdir -p "$SLIPWAY_DATA_DIR/registry" && touch "$cfg")
  cat >"$cfg" <<YAML
version: 0.1
log: {level: warn}
storage:
  filesystem: {rootdirectory: $SLIPWAY_DATA_DIR/registry}
  delete: {enabled: true}
http: {addr: $addr}
YAML
  # The control plane deletes the manifests of images no revision runs any more; their layers
  # are freed here, while the registry is stopped (garbage collection is unsafe during pushes).
  # Not --delete-untagged: revisions pin images by digest, not by tag.
  if [ -d "$SLIPWAY_DATA_DIR/registry/docker/registry/v2/repositories" ]; then
    (umask 077 && exec docker-registry garbage-collect "$cfg" >"$LOGS/registry-gc.log" 2>&1) ||
      warn "registry garbage collection failed (see $LOGS/registry-gc.log); starting it anyway"
  fi
  say "starting the registry on $addr"
  (umask 077 && exec nohup docker-registry serve "$cfg" >"$LOGS/registry.log" 2>&1) &
  private_pid "$RUN/registry.pid" $!
  wait_http "http://$addr/v2/" registry 30 || die "registry did not start; see $LOGS/registry.log"
}

start_control_plane() {
  local api="http://127.0.0.1:$SLIPWAY_API_PORT/healthz"
  if ! curl -fsS -o /dev/null "$api" 2>/dev/null; then
    private_dirs
    say "starting the control plane on 127.0.0.1:$SLIPWAY_API_PORT"
    (umask 077 && exec nohup "$VENV/bin/slipway" server >>"$LOGS/control-plane.log" 2>&1) &
    private_pid "$RUN/control-plane.pid" $!
    wait_http "$api" control-plane 60 || { tail -20 "$LOGS/control-plane.log" >&2;
      die "control plane did not start; its log is $LOGS/control-plane.log"; }
  fi
  # HAProxy is started by the control plane; the bare domain answers through it.
  wait_http "http://localhost:$SLIPWAY_PORT/healthz" haproxy 30 ||
    die "HAProxy does not answer on :$SLIPWAY_PORT; see $LOGS/control-plane.log"
}

stop_pidfile() { # file, name
  if pid_alive "$1"; then
    say "stopping $2"
    kill "$(cut -d' ' -f1 "$1")" 2>/dev/null || true
    for _ in $(seq 1 40); do pid_alive "$1" || break; sleep 0.25; done
  fi
  rm -f "$1"
}
