#!/usr/bin/env bash
# make test-localstack: the whole integration suite against LocalStack 4.14.0 (IOTPIPE_TARGET=localstack).
#
#   scripts/test-localstack.sh [PYTEST ARGS...]        (default: tests/integration -q)
#
# Where LocalStack comes from, first match wins:
#   1. AWS_ENDPOINT_URL is set        -> that endpoint (a LocalStack you started; nothing is started here)
#   2. a Docker engine answers        -> the compose file's `localstack` service: `docker compose up -d
#                                        localstack`, wait for its health check, `docker compose down` after
#   3. otherwise                      -> ../shared/localstack-host (LocalStack 4.14.0's own code as host
#                                        processes, Lambda included, layers NOT applied as in the community
#                                        image): set up once into LOCALSTACK_HOST_DIR (a cache later runs
#                                        reuse), started, the suite run inside its network namespace, and
#                                        stopped by its pid on exit, whether the tests pass or fail.
# Environment: LOCALSTACK_HOST_DIR (default ~/.cache/iotpipe/localstack-host-4.14.0), LSH_HARNESS (default
# ../shared/localstack-host), PYTHON (default .venv/bin/python).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
PYTEST=("$PYTHON" -m pytest)
ARGS=("$@")
[ ${#ARGS[@]} -gt 0 ] || ARGS=(tests/integration -q)
T0=$(date +%s)
say() { echo "[test-localstack $(( $(date +%s) - T0 ))s] $*" >&2; }

# The LocalStack settings are the compose file's (one source): SERVICES and the Lambda timeout.
compose_env() {
  "$PYTHON" - "$1" <<'PY'
import sys, yaml
env = yaml.safe_load(open("docker-compose.yml"))["services"]["localstack"]["environment"]
print(env[sys.argv[1]])
PY
}

# Everything that needs PyPI happens out here: inside the harness's namespace there is no network.
say "building the function packages"
"$PYTHON" scripts/build.py >/dev/null

export IOTPIPE_TARGET=localstack

if [ -n "${AWS_ENDPOINT_URL:-}" ]; then
  say "against AWS_ENDPOINT_URL=$AWS_ENDPOINT_URL"
  exec "${PYTEST[@]}" "${ARGS[@]}"
fi

if docker info >/dev/null 2>&1; then
  say "Docker engine found: the compose file's localstack service"
  trap 'say "docker compose down"; docker compose down -v localstack >/dev/null 2>&1 || true' EXIT
  docker compose up -d --wait localstack
  AWS_ENDPOINT_URL=http://127.0.0.1:4566 AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test \
    AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 "${PYTEST[@]}" "${ARGS[@]}"
  exit $?
fi

HARNESS="${LSH_HARNESS:-$ROOT/../shared/localstack-host}"
DIR="${LOCALSTACK_HOST_DIR:-$HOME/.cache/iotpipe/localstack-host-4.14.0}"
[ -x "$HARNESS/setup.sh" ] || { echo "test-localstack: no Docker engine and no harness at $HARNESS" >&2; exit 2; }
# Set up once; again only when the harness itself changed (its files' hash is kept beside the setup).
STAMP="$DIR/.iotpipe-harness.sha256"
want=$(cat "$HARNESS"/*.sh "$HARNESS"/constraints-*.txt | sha256sum | cut -d' ' -f1)
if [ ! -x "$DIR/venv/bin/python" ] || [ ! -x "$DIR/lambda-python/bin/python" ] \
   || [ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]; then
  say "setting up LocalStack 4.14.0 (host harness) in $DIR (once; ~2 min)"
  "$HARNESS/stop.sh" "$DIR" >/dev/null 2>&1 || true
  "$HARNESS/setup.sh" "$DIR" 2>&1 | grep --line-buffered -v '^WARNING: ' | sed -u 's/^/  /' >&2
  echo "$want" > "$STAMP"
else
  say "reusing the LocalStack harness set up in $DIR"
fi

# One LocalStack per DIR: one left running by an interrupted run is stopped first (by its pid file).
"$HARNESS/stop.sh" "$DIR" >/dev/null 2>&1 || true
stop() {
  local rc=$?
  say "stopping LocalStack (pid $(cat "$DIR/localstack.pid" 2>/dev/null || echo '?'))"
  "$HARNESS/stop.sh" "$DIR" >/dev/null 2>&1 || true
  exit $rc
}
trap stop EXIT
trap 'exit 130' INT TERM
say "starting LocalStack (SERVICES from docker-compose.yml)"
SERVICES="$(compose_env SERVICES)" LAMBDA_RUNTIME_ENVIRONMENT_TIMEOUT="$(compose_env LAMBDA_RUNTIME_ENVIRONMENT_TIMEOUT)" \
  "$HARNESS/start.sh" "$DIR" >/dev/null
say "running: pytest ${ARGS[*]} (inside LocalStack's network namespace; log $DIR/localstack.log)"
# run-in.sh points HOME and TMPDIR into DIR; the project's tools keep their own paths.
set +e
# The harness runs functions as host processes: files they write are visible to the tests.
"$HARNESS/run-in.sh" "$DIR" env IOTPIPE_TARGET=localstack IOTPIPE_FUNCTIONS_ON_HOST=1 "${PYTEST[@]}" "${ARGS[@]}"
rc=$?
set -e
say "pytest exit $rc"
exit $rc
