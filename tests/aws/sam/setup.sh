#!/usr/bin/env bash
# Makes `sam local` work on this machine, idempotently, and builds the functions with `sam build`:
#   1. Docker: installs docker.io if it is missing and starts dockerd if it is not running
#      (there is no systemd here);
#   2. the SAM CLI's host-network patch (sam_hostnet.py, loaded from a .pth file in its venv),
#      so that containers use Docker's host network and every packet stays on loopback;
#   3. the base image SAM expects for provided.al2023 (public.ecr.aws/lambda/provided:al2023-ARCH),
#      built from three Debian packages (busybox-static, libc6, libgcc-s1), since no image can be
#      pulled here (on a machine that can pull, `docker pull` it instead);
#   4. `sam build` of infra/template.yaml for this machine's architecture, into .aws-sam/build.
#
#   tests/aws/sam/setup.sh SAM_VENV
#
# Fails loudly when any of it cannot be done: `sam local` is part of the product.
set -euo pipefail
cd "$(dirname "$0")/../../.."
root=$PWD
venv=${1:?usage: setup.sh SAM_VENV}
export DEBIAN_FRONTEND=noninteractive SAM_CLI_TELEMETRY=0

die() { printf '\nsam local cannot run: %s\n' "$*" >&2; exit 1; }
apt_install() {
  apt-get install -y -q --no-install-recommends "$@" >/dev/null 2>&1 ||
    { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends "$@" >/dev/null; } ||
    die "apt-get install $* failed"
}

case $(dpkg --print-architecture) in
  amd64) arch=x86_64 ;;
  arm64) arch=arm64 ;;
  *) die "unsupported architecture $(dpkg --print-architecture)" ;;
esac
base=public.ecr.aws/lambda/provided:al2023-$arch

# 1. Docker.
command -v dockerd >/dev/null || apt_install docker.io
if ! docker info >/dev/null 2>&1; then
  if [ -d /run/systemd/system ]; then
    systemctl start docker
  else
    nohup dockerd >/var/log/dockerd.log 2>&1 &
  fi
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
  docker info >/dev/null 2>&1 || die "dockerd did not start (see /var/log/dockerd.log)"
fi
echo "docker $(docker version --format '{{.Server.Version}}')"

# 2. The host-network patch.
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
install -m644 tests/aws/sam/sam_hostnet.py "$site/sam_hostnet.py"
echo 'import sam_hostnet; sam_hostnet.install()' >"$site/sam_hostnet.pth"
"$venv/bin/python" -c 'import sam_hostnet, sys; sys.exit(0 if sam_hostnet.applied() else 1)' ||
  die "the host-network patch did not apply to this SAM CLI ($("$venv/bin/sam" --version))"

# 3. The base image (and SAM's image on top of it, which SAM builds once, then reuses).
stamp="tocsin-base-1"
if [ "$(docker image inspect "$base" --format '{{index .Config.Labels "tocsin"}}' 2>/dev/null)" != "$stamp" ]; then
  work=$(mktemp -d)
  rootfs=$work/rootfs
  mkdir -p "$rootfs"
  chown _apt "$work" 2>/dev/null || true
  (cd "$work" && { apt-get download busybox-static libc6 libgcc-s1 >/dev/null 2>&1 ||
    { apt-get update -q >/dev/null && apt-get download busybox-static libc6 libgcc-s1 >/dev/null; }; }) ||
    die "cannot download busybox-static, libc6 and libgcc-s1"
  for deb in "$work"/*.deb; do dpkg-deb -x "$deb" "$rootfs"; done
  rm -rf "$rootfs/usr/share" "$rootfs"/usr/lib/*-linux-gnu/gconv
  for applet in $("$rootfs/bin/busybox" --list); do
    [ -e "$rootfs/bin/$applet" ] || ln -s busybox "$rootfs/bin/$applet"
  done
  mkdir -p "$rootfs"/{tmp,var/task,var/runtime,var/rapid,opt/lib,opt/bin,etc,proc,sys,dev,usr/bin,usr/lib64}
  chmod 1777 "$rootfs/tmp"
  echo 'root:x:0:0:root:/root:/bin/sh' >"$rootfs/etc/passwd"
  echo 'root:x:0:' >"$rootfs/etc/group"
  echo 'hosts: files dns' >"$rootfs/etc/nsswitch.conf"
  [ -f /etc/ssl/certs/ca-certificates.crt ] &&
    install -D -m644 /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
  tar -C "$rootfs" -c . | docker import \
    --change "LABEL tocsin=$stamp" \
    --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin:/opt/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV LD_LIBRARY_PATH=/lib64:/usr/lib64:/var/runtime:/var/task:/opt/lib' \
    --change 'ENV LAMBDA_TASK_ROOT=/var/task' \
    --change 'ENV LAMBDA_RUNTIME_DIR=/var/runtime' \
    --change 'WORKDIR /var/task' \
    - "$base" >/dev/null || die "docker import of the base image failed"
  rm -rf "$work"
  # SAM builds its ...:al2023-rapid-ARCH image on the base once and never again: drop a stale one.
  docker image rm "public.ecr.aws/lambda/provided:al2023-rapid-$arch" >/dev/null 2>&1 || true
fi
docker image inspect "$base" --format "base image $base: {{.Size}} bytes"

# 4. sam build: cargo-lambda's release build of each function, for this machine's architecture.
# It reuses the workspace's target directory, so after `cargo lambda build --release` it only
# links and copies.
PATH="$root/$venv/bin:$PATH" "$venv/bin/sam" build --template-file infra/template.yaml \
  --build-dir .aws-sam/build --parameter-overrides "Architecture=$arch" ||
  die "sam build failed"
ls -l .aws-sam/build/*/bootstrap
