"""The vulnerability audit of ``tools/supply-chain.sh``: pip-audit over the packages the gateway
runs on, and an honest answer when it cannot reach its vulnerability service.

Scope: ztgate's runtime dependencies as installed, resolved from the environment's own
metadata (what the image ships: ``pip install ztgate``), pinned to their installed versions
in build/requirements.txt; ``SUPPLY_CHAIN_SCOPE=environment`` audits every installed package
instead (the test and benchmark tools too).

pip-audit asks PyPI's JSON API for each release (``/pypi/NAME/VERSION/json``). Where only the
project document (``/pypi/NAME/json``) can be read, as on machines whose registry mirror
serves no per-release documents, pip-audit skips every package and would report "No known
vulnerabilities found". Then this audits from the project document instead, which carries the
known vulnerabilities of the *latest* release: exact for a package installed at its latest
release, nothing for an older one, which fails the audit by name (upgrade it, or reach the
service). Every outcome is said; none passes silently.

Exit status: 0 audited, nothing found (or only what ``IGNORED`` accepts with its reason);
1 known vulnerabilities; 2 could not audit everything.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from importlib.metadata import PackageNotFoundError, distribution, distributions
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

OUT = Path("build")
# Known vulnerabilities accepted for now: id -> why (passed to pip-audit as --ignore-vuln).
IGNORED: dict[str, str] = {}
PROJECT = "ztgate"
PYPI = "https://pypi.org/pypi/{name}/json"


def runtime_closure(root: str = PROJECT) -> dict[str, str]:
    """Every distribution ``root`` needs at run time, with its installed version."""
    found: dict[str, str] = {}
    todo: list[tuple[str, frozenset[str]]] = [(root, frozenset())]
    while todo:
        name, extras = todo.pop()
        try:
            dist = distribution(name)
        except PackageNotFoundError:
            continue  # a marker-less requirement for another platform; pip would not install it
        key = canonicalize_name(dist.metadata["Name"])
        seen_key = f"{key}[{','.join(sorted(extras))}]"
        if seen_key in found:
            continue
        found[seen_key] = dist.version
        for text in dist.requires or []:
            req = Requirement(text)
            wanted = [{"extra": e} for e in extras] or [{"extra": ""}]
            if req.marker is not None and not any(req.marker.evaluate(env) for env in wanted):
                continue
            todo.append((req.name, frozenset(req.extras)))
    packages = {k.split("[")[0]: v for k, v in found.items()}
    packages.pop(canonicalize_name(root), None)  # the project itself is not on PyPI
    return dict(sorted(packages.items()))


def environment() -> dict[str, str]:
    packages = {canonicalize_name(d.metadata["Name"]): d.version for d in distributions()}
    packages.pop(canonicalize_name(PROJECT), None)
    return dict(sorted(packages.items()))


def pip_audit(requirements: Path, service: str) -> tuple[int, dict[str, object] | None, str]:
    report = OUT / "pip-audit.json"
    report.unlink(missing_ok=True)
    command = [
        sys.executable, "-m", "pip_audit", "--requirement", str(requirements), "--no-deps",
        "--disable-pip", "--strict", "--progress-spinner", "off", "--vulnerability-service",
        service, "--format", "json", "--output", str(report),
        *(arg for vid in IGNORED for arg in ("--ignore-vuln", vid)),
    ]  # fmt: skip
    run = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
    (OUT / "pip-audit.log").write_text(run.stdout + run.stderr)
    document = json.loads(report.read_text()) if report.exists() and report.stat().st_size else None
    return run.returncode, document, run.stderr


def from_project_documents(packages: dict[str, str]) -> tuple[list[str], list[str]]:
    """(vulnerabilities found, packages that could not be audited) from PyPI's project
    documents: authoritative for a package at its latest release only."""
    found: list[str] = []
    unaudited: list[str] = []
    for name, version in packages.items():
        try:
            with urllib.request.urlopen(PYPI.format(name=name), timeout=30) as answer:  # noqa: S310
                document = json.load(answer)
        except (urllib.error.URLError, TimeoutError, ValueError) as exc:
            unaudited.append(f"{name} {version}: PyPI's project document: {exc}")
            continue
        latest = document["info"]["version"]
        if latest != version:
            unaudited.append(f"{name} {version}: not the latest release ({latest})")
            continue
        for vuln in document.get("vulnerabilities") or []:
            if vuln.get("withdrawn") or vuln["id"] in IGNORED:
                continue
            fixed = ", ".join(vuln.get("fixed_in") or []) or "no fix"
            found.append(f"{name} {version}: {vuln['id']} (fixed in {fixed})")
    return found, unaudited


def main() -> int:
    OUT.mkdir(exist_ok=True)
    scope = os.environ.get("SUPPLY_CHAIN_SCOPE", "runtime")
    service = os.environ.get("SUPPLY_CHAIN_SERVICE", "pypi")
    packages = environment() if scope == "environment" else runtime_closure()
    requirements = OUT / "requirements.txt"
    requirements.write_text("".join(f"{n}=={v}\n" for n, v in packages.items()))
    for vid, why in IGNORED.items():
        print(f"supply chain: ignoring {vid}: {why}")

    status, document, stderr = pip_audit(requirements, service)
    if document is not None:
        deps = document.get("dependencies", [])
        assert isinstance(deps, list)
        found = [
            f"{d['name']} {d['version']}: {v['id']} "
            f"(fixed in {', '.join(v['fix_versions']) or 'no fix'})"
            for d in deps
            for v in d.get("vulns", [])
        ]
        for line in found:
            print(f"supply chain: {line}", file=sys.stderr)
        print(
            f"supply chain: pip-audit ({service}): {len(deps)} {scope} packages, "
            f"{len(found)} known vulnerabilities"
        )
        return 1 if found or status else 0

    skipped = stderr.count("could not be audited")
    if "could not be audited" not in stderr or service != "pypi":
        print(f"supply chain: FAILED: pip-audit could not run (exit {status}):", file=sys.stderr)
        print("  " + (stderr.strip().splitlines() or ["(no output)"])[-1], file=sys.stderr)
        return 2
    print(
        f"supply chain: pip-audit found no per-release document on PyPI (skipped {skipped}); "
        "auditing from the project documents (exact for latest releases)"
    )
    found, unaudited = from_project_documents(packages)
    (OUT / "vulnerabilities.json").write_text(
        json.dumps(
            {
                "mode": "pypi-project-documents",
                "packages": packages,
                "found": found,
                "unaudited": unaudited,
            },
            indent=1,
        )
    )
    for line in found:
        print(f"supply chain: {line}", file=sys.stderr)
    print(
        f"supply chain: {len(packages)} {scope} packages, {len(found)} known vulnerabilities, "
        f"{len(unaudited)} not audited"
    )
    if unaudited:
        print("supply chain: FAILED: these could not be audited:", file=sys.stderr)
        for line in unaudited:
            print(f"  {line}", file=sys.stderr)
        print(
            "  Upgrade them to their latest release, or run where PyPI's per-release JSON (or "
            "api.osv.dev, SUPPLY_CHAIN_SERVICE=osv) is reachable.",
            file=sys.stderr,
        )
        return 2
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
