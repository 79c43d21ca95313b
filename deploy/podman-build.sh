#!/usr/bin/env bash
# Build and smoke-test the CPU image (deploy/Dockerfile) with Debian's podman where no container
# registry can be reached: the base image is bootstrapped from Debian packages, and torch can
# come from a local wheel folder instead of the PyTorch CPU index. Run as root from the
# repository root:   bash deploy/podman-build.sh
#
# What it does (see README, "Deployment and scale-out", for what ran on the development machine):
#   1. apt-get install podman runc debootstrap
#   2. debootstrap Debian bookworm (python3.11, pip, venv) -> local image $BASE_IMAGE, shaped like
#      python:3.11-slim (/usr/local/bin/python, pip allowed), carrying the host's CA bundle so
#      pip works behind a TLS-inspecting proxy
#   3. podman build --build-arg BASE_IMAGE=... [--build-arg TORCH_INDEX_URL=<local index>]
#   4. podman run the image (`nowcast serve`, synthetic source) and GET /v1/status
# Environment: TORCH_WHEEL_DIR (folder with the torch CPU wheel; default: the PyTorch index),
# MIRROR (Debian mirror), PORT (host port of the smoke test, default 8018), WORK (scratch dir).
set -euo pipefail
cd "$(dirname "$0")/.."

WORK=${WORK:-/tmp/nowcast-podman}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
BASE_IMAGE=${BASE_IMAGE:-localhost/nowcast-base:py311-bookworm}
IMAGE=${IMAGE:-localhost/nowcast:cpu}
PORT=${PORT:-8018}
mkdir -p "$WORK"

export DEBIAN_FRONTEND=noninteractive
command -v podman >/dev/null && command -v runc >/dev/null && command -v debootstrap >/dev/null \
  || { apt-get update -qq && apt-get install -y -qq --no-install-recommends podman runc debootstrap uidmap >/dev/null; }

# A VM with cgroup v1+v2 "hybrid" mounts and without CAP_SYS_RESOURCE: crun refuses hybrid
# cgroups and podman's default ulimits (nofile/nproc above the hard limits) cannot be set.
mkdir -p /etc/containers
if [ ! -f /etc/containers/containers.conf ]; then
  printf '[containers]\ndefault_ulimits = []\n\n[engine]\nruntime = "runc"\n' > /etc/containers/containers.conf
fi

if ! podman image exists "$BASE_IMAGE"; then
  ROOTFS="$WORK/rootfs"
  [ -x "$ROOTFS/usr/bin/python3" ] || debootstrap --variant=minbase \
    --include=python3,python3-venv,python3-pip,ca-certificates,libgomp1 bookworm "$ROOTFS" "$MIRROR"
  ln -sf /usr/bin/python3 "$ROOTFS/usr/local/bin/python"
  ln -sf /usr/bin/pip3 "$ROOTFS/usr/local/bin/pip"
  rm -f "$ROOTFS"/usr/lib/python3.*/EXTERNALLY-MANAGED "$ROOTFS"/var/cache/apt/archives/*.deb
  cp /etc/ssl/certs/ca-certificates.crt "$ROOTFS/etc/ssl/certs/ca-certificates.crt"
  printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\nextra-index-url = https://pypi.org/simple\n' > "$ROOTFS/etc/pip.conf"
  tar -C "$ROOTFS" -c . | podman import --change 'CMD ["python3"]' - "$BASE_IMAGE"
fi

BUILD_ARGS=(--build-arg "BASE_IMAGE=$BASE_IMAGE")
SERVER_PID=""
cleanup() { [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true; podman rm -f nowcast-smoke >/dev/null 2>&1 || true; }
trap cleanup EXIT
if [ -n "${TORCH_WHEEL_DIR:-}" ]; then  # a PEP 503 index of the local torch wheel on loopback
  mkdir -p "$WORK/index/simple/torch"
  for w in "$TORCH_WHEEL_DIR"/torch-*.whl; do
    ln -sf "$w" "$WORK/index/simple/torch/"
    echo "<a href=\"$(basename "$w")\">$(basename "$w")</a>" >> "$WORK/index/simple/torch/index.html"
  done
  (cd "$WORK/index" && exec python3 -m http.server 8765 --bind 127.0.0.1 >/dev/null 2>&1) &
  SERVER_PID=$!
  BUILD_ARGS+=(--build-arg "TORCH_INDEX_URL=http://127.0.0.1:8765/simple")
  sleep 1
fi

time podman build --format docker --network host --pull=never --ignorefile deploy/Dockerfile.dockerignore \
  -f deploy/Dockerfile "${BUILD_ARGS[@]}" -t "$IMAGE" .

podman run -d --name nowcast-smoke --network host -e NOWCAST_PORT="$PORT" "$IMAGE" serve --port "$PORT"
for _ in $(seq 1 90); do
  if python3 -c "import urllib.request,sys; sys.stdout.write(urllib.request.urlopen('http://127.0.0.1:$PORT/v1/status', timeout=3).read().decode())" 2>/dev/null; then
    echo; echo "image $IMAGE: /v1/status answered"; exit 0
  fi
  sleep 2
done
podman logs nowcast-smoke | tail -30
echo "image $IMAGE: /v1/status did not answer" >&2
exit 1
