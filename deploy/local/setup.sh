#!/usr/bin/env bash
# Installs what Touchpoint needs on this machine, once: system packages (Java, Maven, PostgreSQL, curl, Chromium), the
# virtualenv with the project, and the Kafka jars. Every step is skipped when already done.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"

need_apt=()
command -v java >/dev/null || need_apt+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || need_apt+=(maven)
command -v curl >/dev/null || need_apt+=(curl)
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need_apt+=(postgresql)
# Debian's Chromium runs the agent console's browser tests and benchmark (headless, driven by Playwright).
# Installed without recommends, so its fonts are named here.
command -v chromium >/dev/null || need_apt+=(chromium fonts-liberation)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing ${need_apt[*]}"
  sudo_cmd=""; [ "$(id -u)" = 0 ] || sudo_cmd=sudo
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -f "$stamp" ]; then
  echo "setup: creating the virtualenv and installing the project"
  python3 -m venv .venv
  .venv/bin/pip install -q -U pip
  .venv/bin/pip install -q -e ".[test]"
  rm -f .venv/.installed-*
  touch "$stamp"
fi

if ! ls .cache/kafka/libs/kafka_2.13-*.jar >/dev/null 2>&1; then
  echo "setup: resolving Apache Kafka from Maven Central"
  mvn -q -B -f deploy/kafka/pom.xml dependency:copy-dependencies
fi
