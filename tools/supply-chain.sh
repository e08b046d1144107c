#!/usr/bin/env bash
# The supply chain (docs/reliability.md, "Supply chain and leaks"): a CycloneDX SBOM of the
# project's environment, and a vulnerability audit of the packages the gateway runs on.
#
#   tools/supply-chain.sh            # make supply-chain; make test runs it
#
# Writes build/sbom.cdx.json (CycloneDX 1.6 JSON: ztgate as the root component, every
# installed distribution with its version, licence and purl), build/requirements.txt (the
# runtime dependencies as installed), and pip-audit's report (build/pip-audit.json, or
# build/vulnerabilities.json when it had to audit from PyPI's project documents: see
# tools/supply_chain.py). Exits 1 on a known vulnerability that IGNORED there does not accept
# with its reason, 2 when not every package could be audited: a vulnerability service that
# cannot be reached fails the audit loudly, never passes it silently (pip-audit alone says
# "No known vulnerabilities found" and exits 0 when it skipped every package).
#
# Environment:
#   PYTHON                 the environment to describe and audit (default .venv/bin/python)
#   SUPPLY_CHAIN_SCOPE     runtime (default: ztgate's dependencies) or environment (all)
#   SUPPLY_CHAIN_SERVICE   pip-audit's vulnerability service: pypi (default) or osv
#   SUPPLY_CHAIN_AUDIT     "offline": write the SBOM, do not audit, and say so (exit 0); an
#                          explicit choice for a machine that reaches no service, never a
#                          fallback.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-.venv/bin/python}
OUT=build
mkdir -p "$OUT"

# --- the SBOM: offline, from what is installed --------------------------------------------------
"$PYTHON" -m cyclonedx_py environment "$PYTHON" \
  --pyproject pyproject.toml --mc-type application --output-reproducible \
  --output-format JSON --output-file "$OUT/sbom.cdx.json"
"$PYTHON" - "$OUT/sbom.cdx.json" <<'PY'
import json, sys
sbom = json.load(open(sys.argv[1]))
components = sbom.get("components", [])
assert sbom.get("bomFormat") == "CycloneDX" and components, "the SBOM lists no component"
print(f"supply chain: {sys.argv[1]}: CycloneDX {sbom['specVersion']}, {len(components)} components")
PY

if [ "${SUPPLY_CHAIN_AUDIT:-}" = offline ]; then
  echo "supply chain: NOT AUDITED: SUPPLY_CHAIN_AUDIT=offline was set; no package was checked" \
       "for known vulnerabilities" >&2
  exit 0
fi

# --- the audit: pip-audit, or an honest answer when it cannot reach its service -------------
exec "$PYTHON" tools/supply_chain.py
