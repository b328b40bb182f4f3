#!/usr/bin/env bash
# Installs everything the project needs on a fresh Debian machine, idempotently:
# system packages (Java 17, Maven, PostgreSQL) when missing, uv, the locked Python
# environment in .venv/, and Apache Kafka's jars (cached in .cache/).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\033[1;36msetup\033[0m %s\n' "$*"; }

export SSL_CERT_FILE="${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}"
export UV_PYTHON_DOWNLOADS=never

# `--test-tools` adds what the test suite drives for real: promtool, an independent CID tool,
# a headless browser and kcat, and the container tools below.
# `--containers` adds podman (with runc), debootstrap (the local base image: ops/images/) and
# podman-compose (PyPI, pinned, in .cache/tools/bin) for `make images` and the compose run.
test_tools=0
containers=0
for arg in "$@"; do
  case "$arg" in
    --test-tools) test_tools=1; containers=1 ;;
    --containers) containers=1 ;;
  esac
done

missing=()
command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || [ -n "${KAFKA_HOME:-}" ] || missing+=(maven)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
if [ "$test_tools" = 1 ]; then
  command -v promtool >/dev/null || missing+=(prometheus)
  command -v ipfs-cid >/dev/null || missing+=(ipfs-cid)
  command -v chromium >/dev/null || missing+=(chromium)
  command -v kcat >/dev/null || missing+=(kcat)
fi
if [ "$containers" = 1 ]; then
  command -v podman >/dev/null || missing+=(podman)
  command -v runc >/dev/null || missing+=(runc)
  command -v catatonit >/dev/null || [ -x /usr/libexec/podman/catatonit ] || missing+=(catatonit)
  command -v debootstrap >/dev/null || missing+=(debootstrap)
fi
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing system packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "missing system packages: ${missing[*]} (install them, e.g. sudo apt-get install ${missing[*]})" >&2
    exit 1
  fi
fi

PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3.12 || command -v python3)}"
if ! command -v uv >/dev/null; then
  say "installing uv"
  "$PYTHON" -m pip install --quiet --user "uv==0.13.8" 2>/dev/null || "$PYTHON" -m pip install --quiet "uv==0.13.8"
  export PATH="$HOME/.local/bin:$PATH"
fi
UV="$(command -v uv || echo "$PYTHON -m uv")"

if [ "$test_tools" = 1 ] && ! command -v kustomize >/dev/null && [ ! -x "$HOME/go/bin/kustomize" ] \
   && command -v go >/dev/null; then
  say "installing kustomize (Go module proxy) for the k8s/ tests"
  go install sigs.k8s.io/kustomize/kustomize/v5@v5.7.1 2>&1 | tail -2 || true
fi

say "syncing the Python environment in .venv (locked by uv.lock)"
$UV sync --frozen --all-packages --python "$PYTHON" --quiet
# Bytecode ahead of time: where PYTHONDONTWRITEBYTECODE is set (as on CI machines) every process
# would compile its imports again, over a second per service start. Up-to-date files are skipped.
.venv/bin/python -m compileall -q -j 0 .venv/lib shared cli dataflow services tests >/dev/null || true

PODMAN_COMPOSE_VERSION=1.6.0
if [ "$containers" = 1 ] && [ ! -x .cache/tools/bin/podman-compose ]; then
  say "installing podman-compose $PODMAN_COMPOSE_VERSION (PyPI) into .cache/tools"
  UV_TOOL_DIR=.cache/tools UV_TOOL_BIN_DIR=.cache/tools/bin \
    $UV tool install --quiet --python "$PYTHON" "podman-compose==$PODMAN_COMPOSE_VERSION"
fi

say "fetching Apache Kafka (cached after the first time)"
.venv/bin/python -c "from syi_cli.stack.kafka_broker import kafka_classpath; kafka_classpath()"
say "ready"
