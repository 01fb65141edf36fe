#!/usr/bin/env bash
# Builds gauntlet/<service>:local for the three SUT services with no registry: cargo builds the
# binaries on the host, and each image is FROM scratch with the binary, the health check and the
# libraries `ldd` lists. Usage: bash docker/build-offline.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p sut --bins
for service in reward-mock challenge-service event-handler; do
  context=$(mktemp -d)
  trap 'rm -rf "$context"' EXIT
  mkdir -p "$context/rootfs/usr/local/bin" "$context/rootfs/etc/gauntlet"
  cp "target/release/$service" "$context/rootfs/usr/local/bin/service"
  cp target/release/healthcheck "$context/rootfs/usr/local/bin/healthcheck"
  cp fixtures/challenges.json "$context/rootfs/etc/gauntlet/challenges.json"
  libs=$(for bin in "target/release/$service" target/release/healthcheck; do
    ldd "$bin" | awk '/=> \// {print $3} /^[[:space:]]*\// {print $1}'
  done | sort -u)
  for lib in $libs; do
    mkdir -p "$context/rootfs$(dirname "$lib")"
    cp -L "$lib" "$context/rootfs$lib"
  done
  cp docker/Dockerfile.scratch "$context/Dockerfile"
  docker build -q -t "gauntlet/$service:local" "$context" >/dev/null
  rm -rf "$context"
  trap - EXIT
  echo "built gauntlet/$service:local"
done
