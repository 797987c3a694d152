#!/usr/bin/env bash
# Install what the project needs from Debian's packages, only when it is missing.
#   system-deps.sh python   python3 with venv
#   system-deps.sh java     a JDK for Spark (the harness's UDF scoring; javac builds the notebooks' catalog plugin)
#   system-deps.sh docker   docker.io + docker-compose + debootstrap, and a running dockerd
#   system-deps.sh browser  chromium + chromium-driver for the UI tests (tests/test_ui_browser.py)
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
APT_UPDATED=""

apt_install() {
  if [ -z "$APT_UPDATED" ]; then
    $SUDO apt-get update -qq
    APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@"
}

need_python() {
  if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    echo "==> installing python3-venv"
    apt_install python3 python3-venv python3-pip
  fi
}

need_java() {
  # javac too: harness/spark_tables.py compiles the three-level-name catalog plugin on first use.
  if ! java -version >/dev/null 2>&1 || ! command -v javac >/dev/null 2>&1; then
    echo "==> installing a Java development kit for Spark"
    apt_install openjdk-17-jdk-headless
  fi
}

need_docker() {
  local pkgs=()
  command -v dockerd >/dev/null 2>&1 || pkgs+=(docker.io)
  command -v docker-compose >/dev/null 2>&1 || docker compose version >/dev/null 2>&1 || pkgs+=(docker-compose)
  command -v debootstrap >/dev/null 2>&1 || pkgs+=(debootstrap)
  if [ ${#pkgs[@]} -gt 0 ]; then
    echo "==> installing ${pkgs[*]}"
    apt_install "${pkgs[@]}"
  fi
  if ! $SUDO docker info >/dev/null 2>&1; then
    echo "==> starting dockerd"
    # The service manager where there is one; else (containers, CI sandboxes) dockerd directly.
    if [ -d /run/systemd/system ]; then
      $SUDO systemctl start docker || true
    fi
    if ! $SUDO docker info >/dev/null 2>&1; then
      $SUDO bash -c 'nohup dockerd >/var/log/dockerd.log 2>&1 &'
    fi
    for _ in $(seq 1 60); do
      $SUDO docker info >/dev/null 2>&1 && break
      sleep 1
    done
    $SUDO docker info >/dev/null 2>&1 || { echo "dockerd did not start; see /var/log/dockerd.log" >&2; exit 1; }
  fi
}

need_browser() {
  local pkgs=()
  command -v chromium >/dev/null 2>&1 || pkgs+=(chromium)
  command -v chromedriver >/dev/null 2>&1 || pkgs+=(chromium-driver)
  if [ ${#pkgs[@]} -gt 0 ]; then
    echo "==> installing ${pkgs[*]}"
    apt_install "${pkgs[@]}"
  fi
}

for what in "$@"; do
  case "$what" in
    python) need_python ;;
    java) need_java ;;
    docker) need_docker ;;
    browser) need_browser ;;
    *) echo "unknown dependency group: $what" >&2; exit 2 ;;
  esac
done
