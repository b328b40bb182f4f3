#!/usr/bin/env bash
# Builds the images with podman, tagged stableyield/<name>:${SYI_TAG:-dev}:
#   ops/images/build.sh                 every service of services/
#   ops/images/build.sh kafka postgres  the offline profile's infrastructure (ops/images/<name>/)
#   ops/images/build.sh ws-gateway ...  the ones named
# Layers are podman's build cache and uv's downloads a cache mount, both shared by every image,
# so a second build of an unchanged tree takes seconds (docs/operations.md, "Images").
set -euo pipefail
cd "$(dirname "$0")/../.."
export CONTAINERS_CONF="${CONTAINERS_CONF:-$PWD/ops/images/containers.conf}"

say() { printf '\033[1;36mimages\033[0m %s\n' "$*"; }

TAG="${SYI_TAG:-dev}"
PREFIX="${SYI_IMAGE_PREFIX:-stableyield}"
names=("$@")
if [ ${#names[@]} -eq 0 ]; then
  for dockerfile in services/*/Dockerfile; do names+=("$(basename "$(dirname "$dockerfile")")"); done
fi

bash ops/images/base-image.sh

# This machine's CA bundle over the base's for the services' downloads (PyPI over https may pass a
# proxy it trusts). Not for the Debian-package images: apt fetches over http, verified by
# signatures, and their packages write into /etc/ssl/certs.
certs=()
[ -d /etc/ssl/certs ] && certs=(-v /etc/ssl/certs:/etc/ssl/certs:ro)

build() {  # name, Dockerfile, context[, podman build options]
  local started=$SECONDS
  # docker format: OCI images drop HEALTHCHECK, which compose's `up --wait` relies on
  if ! podman build --format docker --layers --network host "${@:4}" \
      -f "$2" -t "$PREFIX/$1:$TAG" "$3" >"$log_dir/$1.log" 2>&1; then
    tail -30 "$log_dir/$1.log" >&2
    echo "images: building $1 failed (whole log: $log_dir/$1.log)" >&2
    return 1
  fi
  say "$PREFIX/$1:$TAG ($((SECONDS - started)) s)"
}

log_dir="${SYI_CACHE_DIR:-$PWD/.cache}/images/logs"
mkdir -p "$log_dir"
jobs="${SYI_IMAGES_JOBS:-2}"  # builds at once: much of a cached build is waiting on the disk
failed=0
for name in "${names[@]}"; do
  case "$name" in
    kafka)
      # the jars setup.sh cached from Maven Central, next to the Containerfile's files
      libs="$(.venv/bin/python -c 'from syi_cli.stack.kafka_broker import kafka_classpath; print(kafka_classpath(say=lambda m: None)[:-2])')"
      context="${SYI_CACHE_DIR:-$PWD/.cache}/images/kafka-context"
      rm -rf "$context" && mkdir -p "$context"
      cp -al "$libs" "$context/libs" 2>/dev/null || cp -a "$libs" "$context/libs"
      rm -f "$context/libs/.complete"
      cp ops/images/kafka/* stack/kafka/log4j2.yaml "$context/"
      build kafka ops/images/kafka/Containerfile "$context" &
      ;;
    postgres)
      build postgres ops/images/postgres/Containerfile ops/images/postgres &
      ;;
    *)
      [ -f "services/$name/Dockerfile" ] || { echo "images: no services/$name/Dockerfile" >&2; exit 1; }
      build "$name" "services/$name/Dockerfile" . "${certs[@]}" &
      ;;
  esac
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || failed=1; done
done
while [ "$(jobs -rp | wc -l)" -gt 0 ]; do wait -n || failed=1; done
exit "$failed"
