"""The forced path, proven with this machine's own network stack.

Three network namespaces, joined by a bridge in a fourth (the switch), stand in for three
machines: a workload, the gateway VM and the Claude API (the upstream simulator, over TLS, as
``api.anthropic.com``). The gateway VM and the workload load the nftables recipes shipped in
``deploy/vm/``, byte for byte except for the values of their ``define`` lines. Then:

- the real ``anthropic`` SDK in the workload, holding only an OIDC token, gets answers through
  ztgate, which runs as an unprivileged user in the gateway namespace;
- a direct call from the workload to the API fails, even with the upstream key, and so does one
  from any other user (root included) on the gateway;
- the API saw, after the rules were loaded, only ztgate's requests, from the gateway's address,
  with ztgate's key.

The same calls are made once before the rules are loaded, and they succeed: the switch routes
the direct path, so its failure afterwards is the rules' doing, not the topology's.

Everything runs in namespaces this module creates (and deletes, with their processes, however
the tests end); nothing touches the host's own interfaces or firewall, and on its disk only two
``/etc/netns/NAME/hosts`` files, removed with the namespaces. It needs root, ``ip`` (iproute2)
and ``nft`` (nftables); ``make setup`` installs the last two when it runs as root.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ztgate.devtools.issuer import DevIssuer
from ztgate.devtools.stack import SIMULATOR_KEY

_SBIN = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
IP = shutil.which("ip", path=_SBIN)
NFT = shutil.which("nft", path=_SBIN)


def _cannot_run() -> str:
    """Why this machine cannot build the namespaces, or "" when it can."""
    if os.geteuid() != 0:
        return "needs root to build network namespaces: run `sudo make test`"
    missing = [name for name, path in (("ip (iproute2)", IP), ("nft (nftables)", NFT)) if not path]
    if missing:
        return f"needs {' and '.join(missing)}: `sudo make setup` installs them"
    return ""


CANNOT_RUN = _cannot_run()
pytestmark = pytest.mark.skipif(bool(CANNOT_RUN), reason=CANNOT_RUN)

REPO = Path(__file__).resolve().parents[2]
GATEWAY_RULES = REPO / "deploy" / "vm" / "gateway.nftables.conf"
WORKLOAD_RULES = REPO / "deploy" / "vm" / "workload.nftables.conf"
PYTHON = sys.executable

API_HOST = "api.anthropic.com"  # the upstream's name in the gateway's and workload's hosts file
ISSUER = "https://issuer.ztgate.test"  # never fetched: ztgate reads the keys from a jwks_file
MODEL = "claude-haiku-4-5"
ZTGATE_PORT = 8787
ZTGATE_UID = 64172  # ztgate's user in the gateway namespace: neither root nor anyone else there

# One /24 and one /64 on the switch: every namespace can reach every other unless a rule says no.
ADDRESSES = {
    "wl": ("10.213.77.2", "fd5a:7467:4d::2"),
    "gw": ("10.213.77.3", "fd5a:7467:4d::3"),
    "up": ("10.213.77.4", "fd5a:7467:4d::4"),
}
WL_V4, WL_V6 = ADDRESSES["wl"]
GW_V4, GW_V6 = ADDRESSES["gw"]
UP_V4, UP_V6 = ADDRESSES["up"]
ROLES = {address: role for role, pair in ADDRESSES.items() for address in pair}
GATEWAY_URL = f"http://{GW_V4}:{ZTGATE_PORT}"

# The Claude API of this test: the simulator's own aiohttp app served over TLS on both families,
# noting who called each /v1 path with which credentials, one JSON line a request, on stdout.
UPSTREAM = """
import asyncio, json, signal, ssl, sys
from aiohttp import web
from ztgate.devtools.simulator import UpstreamSimulator

async def main(cert, key, v4, v6, api_key):
    app = UpstreamSimulator(api_key).app()
    async def note(request, response):
        if request.path.startswith("/v1"):
            seen = {"peer": request.remote, "path": request.path, "status": response.status,
                    "x-api-key": request.headers.get("x-api-key"),
                    "authorization": request.headers.get("authorization")}
            print(json.dumps(seen), flush=True)
    app.on_response_prepare.append(note)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    for host in (v4, v6):
        await web.TCPSite(runner, host, 443, ssl_context=context).start()
    print("ready", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await runner.cleanup()

asyncio.run(main(*sys.argv[1:]))
"""

# A direct call to the API with the standard library (no SDK to import, so it is quick), and
# plain TCP connections to each of its addresses: what each did and how long it took.
PROBE = """
import json, socket, ssl, sys, time, urllib.error, urllib.request
spec = json.loads(sys.argv[1])
def timed(call):
    start = time.monotonic()
    try:
        outcome = call()
    except urllib.error.HTTPError as exc:
        outcome = exc.code
    except (OSError, urllib.error.URLError) as exc:
        reason = getattr(exc, "reason", exc)
        outcome = type(reason).__name__ + ": " + str(reason)
    return {"outcome": outcome, "seconds": round(time.monotonic() - start, 3)}
def call_api():
    body = {"model": spec["model"], "max_tokens": 16,
            "messages": [{"role": "user", "content": "hello"}]}
    request = urllib.request.Request(spec["url"], data=json.dumps(body).encode(), headers={
        "x-api-key": spec["key"], "anthropic-version": "2023-06-01",
        "content-type": "application/json"})
    context = ssl.create_default_context(cafile=spec["cafile"])
    with urllib.request.urlopen(request, timeout=3, context=context) as response:
        return response.status
def connect(address):
    with socket.create_connection((address, 443), timeout=3):
        return "connected"
result = {"https": timed(call_api)}
for address in spec["addresses"]:
    result[address] = timed(lambda: connect(address))
print(json.dumps(result))
"""

# The workload: the real SDK configured as unchanged clients are, from the environment
# (ANTHROPIC_BASE_URL, ANTHROPIC_AUTH_TOKEN), plus what its environment holds.
WORKLOAD = """
import json, os, sys, time
started = time.monotonic()
import anthropic
imported = time.monotonic()
client = anthropic.Anthropic(max_retries=0, timeout=20)
question = [{"role": "user", "content": "Say hello through the gateway."}]
message = client.messages.create(model=sys.argv[1], max_tokens=64, messages=question)
with client.messages.stream(model=sys.argv[1], max_tokens=64, messages=question) as stream:
    streamed = stream.get_final_text()
seconds = {"import": imported - started, "calls": time.monotonic() - imported}
print(json.dumps({"environment": dict(os.environ), "created": message.content[0].text,
                  "streamed": streamed, "seconds": seconds}))
"""

# The same SDK in the workload given the upstream key and the API's own URL (a leaked key, a
# hard-coded base URL): it must not connect. Trusting the test's CA means that, were the
# connection allowed, the call would succeed; only the network can stop it.
LEAKED_KEY = """
import json, sys, time, anthropic
key, cafile, model = sys.argv[1:]
client = anthropic.Anthropic(api_key=key, base_url="https://api.anthropic.com", max_retries=0,
                             timeout=5, http_client=anthropic.DefaultHttpxClient(verify=cafile))
start = time.monotonic()
try:
    client.messages.create(model=model, max_tokens=16,
                           messages=[{"role": "user", "content": "hello"}])
    outcome = "answered"
except anthropic.APIError as exc:
    outcome = type(exc).__name__ + ": " + repr(exc.__cause__)
print(json.dumps({"outcome": outcome, "seconds": round(time.monotonic() - start, 3)}))
"""


def run(*args: str, stdin: str | None = None, timeout: float = 20) -> str:
    """Run a command to completion; its stdout, or an error carrying its stderr."""
    done = subprocess.run(
        args, input=stdin, capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {done.returncode}: {done.stderr}")
    return done.stdout


def recipe(path: Path, **values: str) -> str:
    """The recipe's text with each ``define`` set to the test's value. Every define must get
    one and no value may go unused, so the recipe cannot grow a knob this test does not set."""
    text = path.read_text()
    defined = re.findall(r"^define (\w+) = ", text, flags=re.MULTILINE)
    assert sorted(defined) == sorted(values), (path.name, defined)
    return re.sub(
        r"^define (\w+) = .*$",
        lambda match: f"define {match[1]} = {values[match[1]]}",
        text,
        flags=re.MULTILINE,
    )


def tls_material(folder: Path) -> Path:
    """A throw-away CA and a certificate for ``api.anthropic.com`` signed by it: the API's TLS,
    which the gateway trusts through ``upstream.ca_file``. Returns the CA's file."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ztgate forced-path test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, API_HOST)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(API_HOST)]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    (folder / "ca.pem").write_bytes(ca.public_bytes(pem))
    (folder / "api.pem").write_bytes(leaf.public_bytes(pem))
    (folder / "api-key.pem").write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return folder / "ca.pem"


@dataclass
class ForcedPath:
    """The three namespaces, what ran in them before the rules, and how to run more."""

    namespaces: dict[str, str]
    folder: Path
    cafile: Path
    token: str
    upstream_log: Path
    ztgate_log: Path
    ztgate_pid: int
    before: dict[str, dict[str, Any]]  # the probes' results before any rule was loaded
    seen_before_rules: int  # how many /v1 requests the API had seen when the rules went in

    def exec(self, role: str, *args: str) -> list[str]:
        """A command line that runs ``args`` in one of the namespaces."""
        return in_namespace(self.namespaces[role], *args)

    def probe(self, role: str) -> dict[str, Any]:
        """The direct call and connections to the API, from one namespace, as root."""
        return probe(self.namespaces[role], self.cafile)

    def refusals(self, role: str) -> dict[str, int]:
        """The packets each refusing rule of a namespace's table has counted: per API address
        in the workload's table, "all" in the gateway's (one rule for both addresses)."""
        table = {"wl": "ztgate_workload", "gw": "ztgate_gateway"}[role]
        listed = run(*self.exec(role, str(NFT), "list", "table", "inet", table))
        counted = {
            address: int(packets)
            for address, packets in re.findall(
                r"daddr (\S+) counter packets (\d+) bytes \d+ jump refuse", listed
            )
        }
        if role == "gw":
            (packets,) = re.findall(
                r"^\s*counter packets (\d+) bytes \d+ jump refuse", listed, re.M
            )
            counted["all"] = int(packets)
        return counted

    def upstream_seen(self) -> list[dict[str, Any]]:
        """Every /v1 request the API has answered so far, in order."""
        lines = self.upstream_log.read_text().splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]


def in_namespace(namespace: str, *args: str) -> list[str]:
    """``args`` as a command line run inside a network namespace (and its /etc/netns files)."""
    return [str(IP), "netns", "exec", namespace, *args]


def probe(namespace: str, cafile: Path) -> dict[str, Any]:
    spec = {
        "url": f"https://{API_HOST}/v1/messages",
        "key": SIMULATOR_KEY,
        "cafile": str(cafile),
        "model": MODEL,
        "addresses": [UP_V4, UP_V6],
    }
    return dict(json.loads(run(*in_namespace(namespace, PYTHON, "-c", PROBE, json.dumps(spec)))))


def remove_if_empty(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not empty: another run of this module is using it
        folder.rmdir()


def remove_leftovers() -> None:
    """Namespaces, their processes, hosts files and folders that an earlier run of this module
    left behind when it was killed before its finalizer ran: those whose creator is gone."""
    listed = run(str(IP), "netns", "list")
    for name, pid in re.findall(r"^(ztg-(?:sw|wl|gw|up)-(\d+))\b", listed, flags=re.M):
        if Path(f"/proc/{pid}").exists():
            continue
        for inside in run(str(IP), "netns", "pids", name).split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(inside), signal.SIGKILL)
        subprocess.run([str(IP), "netns", "delete", name], check=False)
        shutil.rmtree(Path("/etc/netns") / name, ignore_errors=True)
        remove_if_empty(Path("/etc/netns"))  # most likely made by that run, which never got here
    for folder in Path(tempfile.gettempdir()).glob("ztgate-forced-path-*-*"):
        if not Path(f"/proc/{folder.name.split('-')[3]}").exists():
            shutil.rmtree(folder, ignore_errors=True)


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def build_network(stack: contextlib.ExitStack, namespaces: dict[str, str]) -> None:
    """The namespaces, a bridge in the switch namespace, one veth pair from each machine to
    it, addresses and loopback; each name resolves ``api.anthropic.com`` to the upstream."""
    for name in namespaces.values():
        run(str(IP), "netns", "add", name)
        stack.callback(subprocess.run, [str(IP), "netns", "delete", name], check=False)
    switch = namespaces["sw"]
    # Each pair is created with both ends already inside namespaces: nothing ever appears in
    # the host's own namespace, not even for a moment.
    pairs = "".join(
        f"link add eth0 netns {namespaces[role]} type veth peer name {role} netns {switch}\n"
        for role in ADDRESSES
    )
    run(str(IP), "-batch", "-", stdin=pairs)
    ports = "".join(
        f"link set dev {role} master br0\nlink set dev {role} up\n" for role in ADDRESSES
    )
    bridge = "link add br0 type bridge\nlink set dev br0 up\n" + ports
    run(str(IP), "-n", switch, "-batch", "-", stdin=bridge)
    for role, (v4, v6) in ADDRESSES.items():
        setup = [
            f"addr add {v4}/24 dev eth0",
            f"addr add {v6}/64 dev eth0 nodad",
            "link set dev eth0 up",
            "link set dev lo up",
        ]
        run(str(IP), "-n", namespaces[role], "-batch", "-", stdin="\n".join(setup) + "\n")
    # `ip netns exec` bind-mounts /etc/netns/NAME/hosts over /etc/hosts for what it runs.
    etc = Path("/etc/netns")
    if not etc.exists():
        etc.mkdir(exist_ok=True)
        stack.callback(remove_if_empty, etc)
    for role in ("wl", "gw"):
        folder = etc / namespaces[role]
        folder.mkdir()
        stack.callback(shutil.rmtree, folder, ignore_errors=True)
        hosts = f"127.0.0.1 localhost\n{UP_V4} {API_HOST}\n{UP_V6} {API_HOST}\n"
        (folder / "hosts").write_text(hosts)


def start(
    stack: contextlib.ExitStack, command: list[str], env: dict[str, str], log: Path, cwd: Path
) -> subprocess.Popen[bytes]:
    """A long-running process, stopped (its whole group) when the module's tests are done."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )

    def stop() -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)

    stack.callback(stop)
    return process


def gateway_config(folder: Path, jwks: Path, cafile: Path) -> Path:
    """ztgate's config: the API by its real name, the key from the environment, the test's CA
    (the real API needs none), the issuer's keys from a file, an allow-all policy."""
    store = folder / "store"
    store.mkdir()
    os.chown(store, ZTGATE_UID, ZTGATE_UID)
    config = folder / "ztgate.yaml"
    config.write_text(
        f'listen: "{GW_V4}:{ZTGATE_PORT}"\n'
        "upstream:\n"
        f'  url: "https://{API_HOST}"\n'
        '  api_key: "${ZTGATE_UPSTREAM_KEY}"\n'
        f'  ca_file: "{cafile}"\n'
        "identity:\n"
        "  issuers:\n"
        "    - name: workloads\n"
        f'      issuer: "{ISSUER}"\n'
        '      audiences: ["ztgate"]\n'
        f'      jwks_file: "{jwks}"\n'
        "store:\n"
        f'  url: "sqlite:///{store}/audit.db"\n'
        "server:\n"
        "  graceful_shutdown: 2s\n"
        "policy:\n"
        "  rules: [{id: everyone, effect: allow}]\n"
    )
    return config


@pytest.fixture(scope="module")
def forced_path() -> Iterator[ForcedPath]:
    """The three machines, the direct path shown open, the rules loaded, then ztgate started:
    the order of a real deployment (nftables at boot, then the service). Everything is undone,
    last made first undone, however the setup or the tests end."""
    remove_leftovers()
    tag = os.getpid()
    namespaces = {role: f"ztg-{role}-{tag}" for role in ("sw", "wl", "gw", "up")}
    with contextlib.ExitStack() as stack:
        folder = Path(tempfile.mkdtemp(prefix=f"ztgate-forced-path-{tag}-"))
        stack.callback(shutil.rmtree, folder, ignore_errors=True)
        folder.chmod(0o755)  # ztgate's user reads its config, the CA and the JWKS here
        build_network(stack, namespaces)
        cafile = tls_material(folder)
        issuer = DevIssuer()
        jwks = folder / "jwks.json"
        jwks.write_text(json.dumps(issuer.jwks()))
        token = issuer.mint("ci/report-job", issuer=ISSUER, ttl=600)

        def netns(role: str, *args: str) -> list[str]:
            return in_namespace(namespaces[role], *args)

        plain = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(folder)}
        upstream_log = folder / "upstream.log"
        upstream = start(
            stack,
            netns(
                "up",
                PYTHON,
                "-c",
                UPSTREAM,
                str(folder / "api.pem"),
                str(folder / "api-key.pem"),
                UP_V4,
                UP_V6,
                SIMULATOR_KEY,
            ),
            plain,
            upstream_log,
            folder,
        )
        wait_for(
            lambda: "ready" in upstream_log.read_text() or upstream.poll() is not None,
            "the upstream",
        )
        assert upstream.poll() is None, upstream_log.read_text()

        # Before any rule: both the workload and root on the gateway can call the API directly.
        before = {"wl": probe(namespaces["wl"], cafile), "gw": probe(namespaces["gw"], cafile)}
        seen_before_rules = sum(
            1 for line in upstream_log.read_text().splitlines() if line.startswith("{")
        )

        gateway_rules = recipe(
            GATEWAY_RULES,
            ZTGATE_USER=str(ZTGATE_UID),
            CLAUDE_API_V4=f"{{ {UP_V4} }}",
            CLAUDE_API_V6=f"{{ {UP_V6} }}",
            CLAUDE_API_PORT="443",
        )
        run(*netns("gw", str(NFT), "-f", "-"), stdin=gateway_rules)
        workload_rules = recipe(
            WORKLOAD_RULES,
            ZTGATE_V4=GW_V4,
            ZTGATE_PORT=str(ZTGATE_PORT),
            CLAUDE_API_V4=f"{{ {UP_V4} }}",
            CLAUDE_API_V6=f"{{ {UP_V6} }}",
        )
        run(*netns("wl", str(NFT), "-f", "-"), stdin=workload_rules)

        # ztgate as its own unprivileged user. CAP_DAC_READ_SEARCH only lets it read the
        # interpreter and the checkout wherever they live (a home directory on a CI runner);
        # it has nothing to do with the network, where it is just uid ZTGATE_UID.
        ztgate_log = folder / "ztgate.log"
        config = gateway_config(folder, jwks, cafile)
        setpriv = shutil.which("setpriv") or "setpriv"
        uid = str(ZTGATE_UID)
        ztgate = start(
            stack,
            netns(
                "gw",
                setpriv,
                "--reuid",
                uid,
                "--regid",
                uid,
                "--clear-groups",
                "--inh-caps",
                "+dac_read_search",
                "--ambient-caps",
                "+dac_read_search",
                PYTHON,
                "-m",
                "ztgate",
                "serve",
                "--config",
                str(config),
            ),
            {**plain, "ZTGATE_UPSTREAM_KEY": SIMULATOR_KEY},
            ztgate_log,
            folder / "store",
        )
        ready = (
            "import sys, time, urllib.request\n"
            "deadline = time.monotonic() + 20\n"
            "while time.monotonic() < deadline:\n"
            "    try:\n"
            f"        urllib.request.urlopen('{GATEWAY_URL}/readyz', timeout=1); sys.exit(0)\n"
            "    except OSError:\n"
            "        time.sleep(0.05)\n"
            "sys.exit(1)\n"
        )
        ready_check = subprocess.run(netns("gw", PYTHON, "-c", ready), timeout=30, check=False)
        assert ready_check.returncode == 0, ztgate_log.read_text()
        assert ztgate.poll() is None, ztgate_log.read_text()

        yield ForcedPath(
            namespaces,
            folder,
            cafile,
            token,
            upstream_log,
            ztgate_log,
            ztgate.pid,
            before,
            seen_before_rules,
        )


@pytest.fixture(scope="module")
def workload(forced_path: ForcedPath) -> dict[str, Any]:
    """The workload's SDK through ztgate and, at the same time (each SDK import takes seconds),
    the same SDK with the leaked key against the API: their results."""
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(forced_path.folder),
        "ANTHROPIC_BASE_URL": GATEWAY_URL,
        "ANTHROPIC_AUTH_TOKEN": forced_path.token,
    }
    through = subprocess.Popen(
        forced_path.exec("wl", PYTHON, "-c", WORKLOAD, MODEL),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    leaked = subprocess.Popen(
        forced_path.exec(
            "wl", PYTHON, "-c", LEAKED_KEY, SIMULATOR_KEY, str(forced_path.cafile), MODEL
        ),
        env={"PATH": "/usr/bin:/bin", "HOME": str(forced_path.folder)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    results: dict[str, Any] = {}
    for name, process in (("through", through), ("leaked", leaked)):
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, f"{name}: {err}\n{forced_path.ztgate_log.read_text()}"
        results[name] = json.loads(out)
    return results


def refused(probed: dict[str, Any]) -> None:
    """The probe's call and both connections were refused, each well within its timeout."""
    for attempt in ("https", UP_V4, UP_V6):
        assert str(probed[attempt]["outcome"]).startswith("ConnectionRefusedError"), probed
        assert probed[attempt]["seconds"] < 1, probed


def test_without_the_rules_the_direct_path_is_open(forced_path: ForcedPath) -> None:
    """The control: before the rules, the workload and root on the gateway both reach the API
    with the key, so every failure below is the rules' doing, not the network's shape."""
    for role in ("wl", "gw"):
        assert forced_path.before[role]["https"]["outcome"] == 200, forced_path.before
        for address in (UP_V4, UP_V6):
            assert forced_path.before[role][address]["outcome"] == "connected", forced_path.before
    seen = forced_path.upstream_seen()[: forced_path.seen_before_rules]
    assert sorted(ROLES[request["peer"]] for request in seen) == ["gw", "wl"], seen


def test_the_sdk_works_through_ztgate(workload: dict[str, Any]) -> None:
    through = workload["through"]
    assert through["created"].strip()
    assert through["streamed"].strip()


def test_the_workload_holds_no_anthropic_key(
    forced_path: ForcedPath, workload: dict[str, Any]
) -> None:
    """What the SDK had to go on was ztgate's address and an OIDC token: no key by any name."""
    environment: dict[str, str] = workload["through"]["environment"]
    assert "ANTHROPIC_API_KEY" not in environment
    assert not [name for name, value in environment.items() if SIMULATOR_KEY in value]
    assert environment["ANTHROPIC_AUTH_TOKEN"] == forced_path.token
    assert environment["ANTHROPIC_BASE_URL"] == GATEWAY_URL
    # Nor did anything that came back through ztgate carry it.
    assert SIMULATOR_KEY not in json.dumps(workload["through"])


def test_a_direct_call_from_the_workload_fails_even_with_the_key(
    forced_path: ForcedPath, workload: dict[str, Any]
) -> None:
    """The SDK with the key and the API's URL, the same stdlib call that worked before the
    rules, and bare TCP to either address: each is refused at once (the rules answer a reset),
    rather than left hanging until its timeout."""
    leaked = workload["leaked"]
    assert leaked["outcome"].startswith("APIConnectionError"), leaked
    assert "Connection refused" in leaked["outcome"], leaked
    assert leaked["seconds"] < 2, leaked
    before = forced_path.refusals("wl")
    refused(forced_path.probe("wl"))
    # The refusals were the workload table's: its rule for each of the API's addresses counted
    # them (while the API itself, answering ztgate meanwhile, was up all along).
    after = forced_path.refusals("wl")
    for address in (UP_V4, UP_V6):
        assert after[address] > before[address], (address, before, after)
    seen = forced_path.upstream_seen()[forced_path.seen_before_rules :]
    assert "wl" not in {ROLES.get(request["peer"]) for request in seen}, seen


def test_on_the_gateway_only_ztgates_user_reaches_the_api(
    forced_path: ForcedPath, workload: dict[str, Any]
) -> None:
    """Root on the gateway, which reached the API before the rules, no longer does; ztgate,
    running there as its own user, does (the SDK's answers above came through it)."""
    before = forced_path.refusals("gw")
    refused(forced_path.probe("gw"))
    assert forced_path.refusals("gw")["all"] > before["all"]
    assert workload["through"]["created"]
    # `ip netns exec` and setpriv exec in turn, so this pid is ztgate's own process.
    assert Path(f"/proc/{forced_path.ztgate_pid}").stat().st_uid == ZTGATE_UID


def test_the_api_saw_only_ztgate_after_the_rules(
    forced_path: ForcedPath, workload: dict[str, Any]
) -> None:
    """Every request the API answered once the rules were in came from the gateway's address
    with ztgate's key, and none carried the workload's token: the create and the stream."""
    del workload  # ran first: its two calls are what the API must have seen
    seen = forced_path.upstream_seen()[forced_path.seen_before_rules :]
    assert [request["path"] for request in seen] == ["/v1/messages", "/v1/messages"], seen
    for request in seen:
        assert ROLES.get(request["peer"]) == "gw", request
        assert request["x-api-key"] == SIMULATOR_KEY, request
        assert request["status"] == 200, request
        assert forced_path.token not in (request["authorization"] or ""), request
