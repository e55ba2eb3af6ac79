#!/usr/bin/env bash
# Security checks: cfn-lint and checkov on the template, pip-audit on the runtime dependencies.
#
#   scripts/security-checks.sh [--no-checkov] [--no-audit]
#
# Fails (exit 1) on: a cfn-lint error, any checkov finding that the template does not suppress with a
# written reason (Metadata: checkov: skip: [{id, comment}]), or a known vulnerability in a runtime
# dependency. An unreachable vulnerability service is reported loudly but does not fail the run on its
# own: the audit then did not happen, which the last line says ("pip_audit": "unreachable").
#
# checkov pins many packages (boto3, pydantic, ...) that would fight the project's own pins, so it lives in
# an environment of its own, .venv-checkov, created on first use with CPython 3.12 (found like the
# Makefile does; PY312=/path/to/python3.12 overrides) and CHECKOV_VERSION (pinned below).
# TEMPLATE=path and AUDIT_REQUIREMENTS=pinned-requirements.txt override what is checked, and
# PIP_AUDIT_OSV_URL an OSV-compatible endpoint (a mirror; or a local fake to test the failure path).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

CHECKOV_VERSION="${CHECKOV_VERSION:-3.3.30}"
TEMPLATE="${TEMPLATE:-cloudformation/template.yaml}"
VENV_PY="$ROOT/.venv/bin/python"
CHECKOV_VENV="$ROOT/.venv-checkov"
DEPS_DIR="$ROOT/build/deps"   # what scripts/build.py installed into the function packages
OUT_DIR="$ROOT/out/security"
run_checkov=1
run_audit=1
for arg in "$@"; do
  case "$arg" in
    --no-checkov) run_checkov=0 ;;
    --no-audit) run_audit=0 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "unknown option: $arg" >&2; exit 2 ;;
  esac
done
mkdir -p "$OUT_DIR"
[ -x "$VENV_PY" ] || { echo "missing $VENV_PY: run 'make venv' first" >&2; exit 2; }

failed=0
cfn_status=skipped checkov_status=skipped audit_status=skipped
checkov_failed=0 checkov_skipped=0 vulns=0 audited=0 skipped=0

find_python312() {
  if [ -n "${PY312:-}" ]; then echo "$PY312"; return; fi
  for c in "$HOME"/.pyenv/versions/3.12.*/bin/python3.12 /usr/local/bin/python3.12 /usr/bin/python3.12 python3.12; do
    if "$c" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null; then echo "$c"; return; fi
  done
}

# ------------------------------------------------------------------------------------------ cfn-lint
echo "== cfn-lint $TEMPLATE"
if "$ROOT/.venv/bin/cfn-lint" "$TEMPLATE"; then
  cfn_status=ok; echo "cfn-lint: clean"
else
  cfn_status=failed; failed=1; echo "cfn-lint: FAILED"
fi

# ------------------------------------------------------------------------------------------ checkov
if [ "$run_checkov" = 1 ]; then
  echo "== checkov $CHECKOV_VERSION on $TEMPLATE"
  if [ ! -x "$CHECKOV_VENV/bin/checkov" ] || ! "$CHECKOV_VENV/bin/checkov" --version 2>/dev/null | grep -qx "$CHECKOV_VERSION"; then
    PY=$(find_python312)
    [ -n "$PY" ] || { echo "Python 3.12 not found (set PY312=/path/to/python3.12)" >&2; exit 2; }
    [ -x "$CHECKOV_VENV/bin/python" ] || "$PY" -m venv "$CHECKOV_VENV"
    echo "installing checkov==$CHECKOV_VERSION into $CHECKOV_VENV ..."
    "$CHECKOV_VENV/bin/python" -m pip install --quiet --disable-pip-version-check "checkov==$CHECKOV_VERSION" 2>&1 \
      | grep -v "is ignored: it is neither a file nor a directory" || true
  fi
  report="$OUT_DIR/checkov.json"
  # checkov exits 1 when a check fails; the verdict is computed from the report below.
  # BC_SKIP_MAPPING: do not fetch Prisma Cloud's guideline mappings (a network call checks do not need).
  # Not --quiet/--compact: the report must list the suppressed checks too.
  BC_SKIP_MAPPING=TRUE "$CHECKOV_VENV/bin/checkov" -f "$TEMPLATE" --framework cloudformation --output json \
    --skip-download > "$report" 2> "$OUT_DIR/checkov.stderr" || true
  counts="$OUT_DIR/checkov.counts"
  "$VENV_PY" - "$report" "$TEMPLATE" > "$counts" <<'PY' || echo "-1 0" > "$counts"
import json, sys
import yaml

class Loader(yaml.SafeLoader):
    pass

Loader.add_multi_constructor("!", lambda loader, suffix, node: None)  # CloudFormation tags: not needed
template = yaml.load(open(sys.argv[2]), Loader=Loader)  # noqa: S506
reasons = {
    (name, skip.get("id")): skip.get("comment", "")
    for name, res in (template.get("Resources") or {}).items()
    for skip in ((res.get("Metadata") or {}).get("checkov") or {}).get("skip") or []
}
raw = open(sys.argv[1]).read().strip()
doc = json.loads(raw) if raw else {}
reports = doc if isinstance(doc, list) else [doc]
failed, skipped = [], []
for rep in reports:
    results = rep.get("results") or {}
    failed += results.get("failed_checks") or []
    skipped += results.get("skipped_checks") or []
for c in skipped:
    logical = c.get("resource", "").rsplit(".", 1)[-1]
    reason = c.get("suppress_comment") or reasons.get((logical, c["check_id"]), "")
    if len(reason.strip()) < 20:  # a suppression without a written reason does not count as one
        failed.append({**c, "check_name": f"suppressed without a written reason: {c.get('check_name', '')}"})
        continue
    print(f"  suppressed {c['check_id']:<12} {c.get('resource', ''):<45} {reason[:90]}", file=sys.stderr)
for c in failed:
    lines = c.get("file_line_range") or ["?", "?"]
    print(f"  FAILED     {c['check_id']:<12} {c.get('resource', ''):<45} {c.get('check_name', '')} "
          f"(lines {lines[0]}-{lines[1]})", file=sys.stderr)
if not reports or not doc:
    print("  checkov produced no report (see out/security/checkov.stderr)", file=sys.stderr)
    print(-1, 0)
else:
    print(len(failed), len(skipped) - sum(1 for c in failed if "written reason" in c.get("check_name", "")))
PY
  read -r checkov_failed checkov_skipped < "$counts"
  if [ "$checkov_failed" = 0 ]; then
    checkov_status=ok; echo "checkov: no unsuppressed findings ($checkov_skipped suppressed with a reason)"
  elif [ "$checkov_failed" = -1 ]; then
    checkov_status=error; failed=1; echo "checkov: did not run"; tail -5 "$OUT_DIR/checkov.stderr" || true
  else
    checkov_status=failed; failed=1
    echo "checkov: $checkov_failed unsuppressed finding(s): fix them or add Metadata: checkov: skip: with a comment"
  fi
fi

# ------------------------------------------------------------------------------------------ pip-audit
if [ "$run_audit" = 1 ]; then
  audit_json="$OUT_DIR/pip-audit.json"
  audit_err="$OUT_DIR/pip-audit.stderr"
  # Audit exactly what ships: the distributions installed into the function packages (build/deps/*),
  # pinned, without resolving again. Without a build, the runtime requirements from pyproject.toml.
  requirements="$OUT_DIR/runtime-requirements.txt"
  if [ -n "${AUDIT_REQUIREMENTS:-}" ]; then  # an explicit pinned list (used to test this script)
    cp "$AUDIT_REQUIREMENTS" "$requirements"
    audit_args=(-r "$requirements" --no-deps --disable-pip)
    echo "== pip-audit: $AUDIT_REQUIREMENTS"
  elif ls "$DEPS_DIR"/*/*.dist-info >/dev/null 2>&1; then
    "$VENV_PY" - "$DEPS_DIR"/*/ > "$requirements" <<'PY'
import sys
from importlib.metadata import distributions
pins = {f"{d.metadata['Name']}=={d.version}" for d in distributions(path=sys.argv[1:])}
print("\n".join(sorted(pins, key=str.lower)))
PY
    audit_args=(-r "$requirements" --no-deps --disable-pip)
    echo "== pip-audit: the function packages' dependencies ($(wc -l < "$requirements") distributions, build/deps)"
  else
    "$VENV_PY" - > "$requirements" <<'PY'
import tomllib
print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))
PY
    audit_args=(-r "$requirements")
    echo "== pip-audit: runtime requirements from pyproject.toml (no build/deps; run scripts/build.py to audit the shipped set)"
  fi
  # PyPI's per-release JSON carries the advisories (the default service); OSV is the fallback. A
  # dependency the service does not know is *skipped* by pip-audit with exit 0, so "not audited" is
  # read from the report, never inferred from the exit code.
  total=$(grep -c . "$requirements" || true)
  for service in pypi osv; do
    rm -f "$audit_json"
    extra=()
    if [ "$service" = osv ] && [ -n "${PIP_AUDIT_OSV_URL:-}" ]; then extra=(--osv-url "$PIP_AUDIT_OSV_URL"); fi
    set +e
    "$ROOT/.venv/bin/pip-audit" "${audit_args[@]}" "${extra[@]}" --vulnerability-service "$service" --format json \
      --output "$audit_json" --progress-spinner off --timeout "${PIP_AUDIT_TIMEOUT:-20}" 2> "$audit_err"
    rc=$?
    set -e
    read -r vulns audited skipped < <("$VENV_PY" - "$audit_json" <<'PY'
import json, os, sys
path = sys.argv[1]
doc = json.load(open(path)) if os.path.exists(path) and os.path.getsize(path) else {}
vulns = audited = skipped = 0
for dep in doc.get("dependencies", []):
    if dep.get("skip_reason"):
        skipped += 1
        continue
    audited += 1
    for v in dep.get("vulns", []):
        vulns += 1
        fix = ", ".join(v.get("fix_versions") or []) or "no fix yet"
        print(f"  VULNERABLE {dep['name']}=={dep.get('version')}: {v['id']} (fixed in: {fix})", file=sys.stderr)
print(vulns, audited, skipped)
PY
    )
    echo "pip-audit ($service): exit $rc, $audited audited, $skipped not known to the service, $vulns vulnerabilities"
    if [ "$vulns" -gt 0 ] || { [ "$rc" = 0 ] && [ "$audited" -gt 0 ]; }; then break; fi
  done
  if [ "$vulns" -gt 0 ]; then
    audit_status=vulnerable; failed=1; echo "pip-audit: $vulns known vulnerabilit(y/ies) in runtime dependencies"
  elif [ "$rc" = 0 ] && [ "$audited" -gt 0 ] && [ "$skipped" = 0 ]; then
    audit_status=ok; echo "pip-audit: no known vulnerabilities"
  elif [ "$rc" = 0 ] && [ "$audited" -gt 0 ]; then
    audit_status=partial
    echo "pip-audit: WARNING - no known vulnerabilities in $audited audited; $skipped NOT audited (see $audit_json)"
  elif [ "$rc" = 0 ] || grep -qiE "connection|resolve|timed? ?out|unreachable|Max retries|NameResolution|ServiceError|SSLError|Temporary failure|Network is|ProxyError" "$audit_err"; then
    audit_status=unreachable; audited=0; skipped=$total
    echo "pip-audit: WARNING - no vulnerability service answered for these releases (PyPI JSON API, OSV):"
    echo "           the runtime dependencies were NOT audited. Run this script where pypi.org/api.osv.dev are reachable."
    grep -iE "error" "$audit_err" | tail -2 | cut -c1-200 | sed 's/^/  /' || true
  else
    audit_status=error; failed=1; echo "pip-audit: failed (exit $rc)"; tail -5 "$audit_err" | sed 's/^/  /'
  fi
fi

echo "== security checks: $([ "$failed" = 0 ] && echo passed || echo FAILED)"
printf '{"cfn_lint": "%s", "checkov": "%s", "checkov_failed": %s, "checkov_suppressed": %s, "pip_audit": "%s", "packages_audited": %s, "packages_not_audited": %s, "vulnerabilities": %s, "passed": %s}\n' \
  "$cfn_status" "$checkov_status" "$checkov_failed" "$checkov_skipped" "$audit_status" "$audited" "$skipped" "$vulns" \
  "$([ "$failed" = 0 ] && echo true || echo false)"
exit "$failed"
