"""The built-in guardrail rule pack, and rule packs a security team writes in the policy file.

A guardrail check is a detector whose category names an intent (``prompt_injection``,
``jailbreak``, ``prompt_extraction``, ``smuggling``, ``exfiltration``) instead of a value, and
whose confidence is its score: how sure a match alone makes us that the text is an attack.
Being detectors, checks are compiled into the same Hyperscan database as the PII and secret
detectors (one pass over each text finds both), obey the same pattern rules (bounded, in the
common subset of ``re`` and Hyperscan) and stream through the same holdback.

Patterns are phrased loosely on purpose: a few filler words may sit between the parts of an
order ("ignore *all of your* previous instructions"), and each part lists its synonyms. Scores
are set so that one strong phrase is enough (>= 0.8) while weak hints (0.3-0.45) count only
together with others (``core/guardrails.combine``). What each check is for, and the rates the
pack reaches, are in docs/guardrails.md.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

from ztgate.core.findings import Category
from ztgate.detectors.custom import word_list_pattern
from ztgate.detectors.patterns import Detector, make_detector

_GAP = r"\s{1,4}"


def _p(phrase: str) -> str:
    """A phrase whose single spaces match a short run of white space."""
    return phrase.replace(" ", _GAP)


def _any(*alternatives: str) -> str:
    return "(?:" + "|".join(alternatives) + ")"


def _up_to(words: int) -> str:
    """Up to about ``words`` filler words on the same line, ending in a space. (One bounded
    run of a class: Hyperscan compiles it into a small repeat, where a repeated word group
    multiplies its automaton.)"""
    return rf"(?:[^\n]{{0,{words * 7}}}\s)?"


@dataclass(frozen=True, slots=True)
class _Check:
    id: str
    category: Category
    score: float
    pattern: str
    message: str
    case_sensitive: bool = False


# --- building blocks -------------------------------------------------------------------------

_IGNORE = _any(
    "ignore",
    "disregard",
    "forget",
    "skip",
    "override",
    "overrule",
    "bypass",
    "neglect",
    "abandon",
    "drop",
    "set aside",
    "pay no attention to",
    "do not follow",
    "don't follow",
    "stop following",
)
_EARLIER = _any(
    "previous",
    "previously",
    "prior",
    "above",
    "earlier",
    "preceding",
    "foregoing",
    "initial",
    "original",
    "system",
    "existing",
    "old",
    "given",
    "former",
    "default",
    "all",
)
_ORDERS = _any(
    r"instructions?",
    r"prompts?",
    r"directions?",
    r"directives?",
    r"rules?",
    r"guidelines?",
    r"commands?",
    "context",
    "messages?",
    "orders",
    "constraints",
    "guidance",
    "programming",
    "restrictions",
    "policies",
    "text",
    "tasks?",
    "requests?",
    "queries",
    "inputs?",
    "prompting",
)
_AI = _any(
    "ai",
    "a\\.i\\.",
    "assistant",
    "llm",
    "language model",
    "large language model",
    "chatbot",
    "chat bot",
    "agent",
    "model",
    "claude",
    "gpt",
    "chatgpt",
    "copilot",
    "bot",
    "automated (?:analysis|screening|review|hiring|grading) (?:software|system|tool|tools)",
    "screening (?:software|system|tool)",
)
_LIMITS = _any(
    "restrictions?",
    "rules",
    "limits",
    "limitations",
    "filters?",
    "filtering",
    "censorship",
    "guidelines",
    "boundaries",
    "constraints",
    "ethics",
    "ethical (?:guidelines|principles|constraints)",
    "morals",
    "morality",
    "content polic(?:y|ies)",
    "safeguards",
    "guardrails",
)
_REVEAL = _any(
    "repeat",
    "print",
    "show",
    "reveal",
    "output",
    "display",
    "tell me",
    "give me",
    "share",
    "leak",
    "dump",
    "recite",
    "write out",
    "spell out",
    "reproduce",
    "expose",
    "disclose",
    "echo",
    "what (?:is|are|was|were)",
)
_HIDDEN = _any(
    "system",
    "initial",
    "original",
    "hidden",
    "secret",
    "internal",
    "developer",
    "pre-?prompt",
    "confidential",
    "full",
    "exact",
    "complete",
)
_SENSITIVE = _any(
    "conversation",
    "chat(?: history| log)?",
    "history",
    "secrets?",
    "credentials?",
    "passwords?",
    "api[ _-]?keys?",
    "access (?:keys?|tokens?)",
    "tokens?",
    "env(?:ironment)? var(?:iable)?s",
    "\\.env",
    "ssh keys?",
    "private keys?",
    "system prompt",
    "context",
    "user data",
    "personal (?:data|information)",
    "session cookies?",
    "cookies",
)
_DESTINATION = _any(
    r"https?://",
    r"hxxps?://",
    r"(?:this|that|the following|my|our|an external|a remote) "
    r"(?:url|link|endpoint|webhook|server|site|address|domain|ip)",
    r"webhook",
    r"pastebin",
    r"requestbin",
    r"ngrok",
)
_ENCODINGS = _any(
    "base ?64",
    "b64",
    "base ?32",
    "base ?16",
    "hex(?:adecimal)?",
    "rot ?-?13",
    "caesar(?: cipher)?",
    "morse(?: code)?",
    "binary",
    "leetspeak",
    "atbash",
    "ascii85",
    "uuencode",
    "url[ -]?encod(?:ed|ing)",
    "unicode escapes",
    "reversed text",
    "quoted-printable",
    "mime",
    "base85",
    "braille",
    "nato(?: alphabet)?",
    "zalgo",
)


def _checks() -> list[_Check]:
    return [
        # --- prompt injection: an order to drop the instructions the model has ------------------
        _Check(
            "injection.ignore_instructions",
            "prompt_injection",
            0.9,
            rf"\b{_IGNORE}{_GAP}{_up_to(4)}{_EARLIER}{_GAP}(?:and{_GAP}following{_GAP})?"
            rf"{_up_to(1)}{_ORDERS}\b",
            "an order to ignore the instructions given before",
        ),
        _Check(
            "injection.ignore_and_do",
            "prompt_injection",
            0.85,
            rf"\b{_IGNORE}{_GAP}(?:the{_GAP}|these{_GAP}|those{_GAP}|any{_GAP}|all{_GAP}|your{_GAP})?"
            rf"(?:instructions|directions|rules|guidelines)\W{{0,3}}(?:and{_GAP})?(?:just|only|instead|now)\b",
            "an order to drop the instructions and do something else",
        ),
        _Check(
            "injection.ignore_above",
            "prompt_injection",
            0.85,
            rf"\b{_IGNORE}{_GAP}(?:all{_GAP}|everything{_GAP}|the{_GAP}|what(?:'s|{_GAP}is|{_GAP}was)?{_GAP})?"
            rf"(?:above|before this|said before|written above|you were told|you have been told)\b",
            "an order to ignore what came before",
        ),
        _Check(
            "injection.stop_everything",
            "prompt_injection",
            0.85,
            rf"\bstop{_GAP}everything\W{{0,12}}now\W{{0,12}}(?:just{_GAP})?(?:print|say|write|output)\b",
            "an order to drop the task and print something else",
        ),
        _Check(
            "injection.new_instructions",
            "prompt_injection",
            0.75,
            rf"\b(?:your|the){_GAP}(?:new|real|true|actual|updated|revised|only){_GAP}"
            rf"(?:instructions?|task|purpose|goal|objective|role|directive|orders|system prompt)"
            rf"{_GAP}(?:is|are|will be|from now on)\b"
            rf"|\b(?:new|updated|revised|real){_GAP}(?:system{_GAP})?"
            rf"(?:instructions|directives|system prompt)\s{{0,2}}(?::|\*\*)",
            "new instructions that replace the model's own",
        ),
        _Check(
            "injection.ignore_rest",
            "prompt_injection",
            0.6,
            rf"\b{_IGNORE}{_GAP}(?:them|those|these|that|it|everything{_GAP}else|the{_GAP}rest|"
            rf"all{_GAP}(?:the{_GAP})?others?){_GAP}(?:and{_GAP})?(?:instead|only|just|focus)\b"
            rf"|\b(?:focus|concentrate|rely){_GAP}(?:only|exclusively|solely|just){_GAP}on{_GAP}"
            rf"(?:the{_GAP})?(?:following|this|information|text|instructions)\b",
            "an order to drop everything but what follows",
        ),
        _Check(
            "injection.answer_only",
            "prompt_injection",
            0.5,
            rf"\b(?:reply|respond|answer|output|say|print)\w{{0,3}}{_GAP}(?:with{_GAP})?(?:only|just|exactly|simply)"
            rf"{_GAP}(?:with{_GAP})?(?:the{_GAP})?(?:following|this|these{_GAP}words)\b"
            rf"|\babsolutely{_GAP}nothing{_GAP}else\b"
            rf"|\b(?:you{_GAP}may{_GAP}not|do{_GAP}not|don't|never){_GAP}deviate{_GAP}from{_GAP}this\b"
            rf"|\bif{_GAP}(?:the{_GAP})?user{_GAP}asks{_GAP}(?:for|about|you)\b"
            rf"|\b{_IGNORE}{_GAP}(?:all|any|every){_GAP}{_up_to(2)}"
            rf"(?:info|information|data|details|content|indicators|text){_GAP}(?:except|but|other{_GAP}than)\b",
            "an order that fixes what the answer must say",
        ),
        _Check(
            "injection.include_verbatim",
            "prompt_injection",
            0.55,
            rf"\b(?:include|insert|add|put|output|print|write){_GAP}"
            rf"(?:in|into|at{_GAP}the{_GAP}(?:end|start){_GAP}of){_GAP}your{_GAP}"
            rf"(?:response|answer|reply|output|summary){_GAP}(?:the{_GAP}following|this)\b"
            rf"|\bit{_GAP}is{_GAP}(?:crucial|essential|vital|imperative){_GAP}(?:that{_GAP})?you"
            rf"{_GAP}(?:do{_GAP})?include\b",
            "an order to put given text into the answer",
        ),
        _Check(
            "injection.privileges",
            "prompt_injection",
            0.6,
            rf"\b(?:grant|give|enable|elevate){_GAP}(?:me{_GAP})?(?:temporary{_GAP})?"
            rf"(?:admin|administrative|administrator|root|elevated|sudo|superuser){_GAP}"
            rf"(?:access|privileges|rights|permissions)\b"
            r"|</?interaction-config>|\b(?:Allowed|Blocked) (?:Modes|Responses)\s{0,2}:",
            "a claim of elevated rights or a configuration block for the model",
        ),
        _Check(
            "injection.instead_say",
            "prompt_injection",
            0.35,
            rf"\binstead\W{{0,3}}(?:just{_GAP}|only{_GAP})?"
            r"(?:say|print|output|respond with|reply with|write|answer with)\b",
            "an order to answer with something else",
        ),
        _Check(
            "injection.addressed_to_ai",
            "prompt_injection",
            0.7,
            rf"\b(?:note|message|instructions?|attention|important|reminder|directive)"
            rf"{_GAP}(?:to|for){_GAP}(?:the{_GAP}|any{_GAP}|all{_GAP})?{_AI}s?\b"
            rf"|\bif{_GAP}you{_GAP}are{_GAP}(?:an?{_GAP})?{_AI}\b"
            rf"|\b(?:dear|hey|hello|attention){_GAP}{_AI}\W"
            rf"|\b{_AI}s?{_GAP}(?:reading|processing|summari[sz]ing|analy[sz]ing|parsing|browsing){_GAP}this\b",
            "text that addresses the AI reading it",
        ),
        _Check(
            "injection.chat_markup",
            "prompt_injection",
            0.8,
            r"<\|(?:im_start|im_end|system|user|assistant|endoftext|start_header_id|end_header_id|eot_id)\|>"
            r"|\[/?INST\]|<</?SYS>>",
            "chat-template tokens that fake a turn of the conversation",
            case_sensitive=True,
        ),
        _Check(
            "injection.fake_turn",
            "prompt_injection",
            0.45,
            r"\n\s{0,4}(?:#{1,4}\s{0,2})?(?:system|assistant|developer|human|admin|user)\s{0,2}:\s"
            r"|\[system\]\(#(?:context|assistant|instructions)\)|\[system\]\s{0,2}\[system\]"
            r"|</?(?:system|system_prompt|instructions|admin)>",
            "a line that poses as a system, developer or assistant turn",
        ),
        _Check(
            "injection.do_not_tell",
            "prompt_injection",
            0.6,
            rf"\b(?:do not|don't|never){_GAP}(?:tell|inform|mention|reveal|let){_GAP}"
            rf"(?:this{_GAP}to{_GAP})?(?:the{_GAP})?(?:user|human|operator|developer)s?\b",
            "an order to keep something from the user",
        ),
        # --- jailbreaks: framings that talk the model out of its rules --------------------------
        _Check(
            "jailbreak.dan",
            "jailbreak",
            0.9,
            rf"\b[Dd][Oo]{_GAP}[Aa][Nn][Yy][Tt][Hh][Ii][Nn][Gg]{_GAP}[Nn][Oo][Ww]\b"
            rf"|\b(?:DAN|STAN|DUDE|AIM|UCAR){_GAP}(?:mode|jailbreak|prompt|\d{{1,2}}(?:\.\d{{1,2}})?)\b"
            rf"|\b(?:[Aa]ct|[Bb]e|[Pp]retend{_GAP}to{_GAP}be|[Pp]lay|[Bb]ecome){_GAP}(?:as{_GAP})?(?:an?{_GAP})?DAN\b"
            rf"|\b(?:BetterDAN|ANTI-DAN|AntiGPT|BasedGPT|Mongo{_GAP}Tom|NRAF|DevMode|BH{_GAP}mode)\b"
            rf"|\balways{_GAP}intelligent{_GAP}and{_GAP}machiavellian\b",
            "a DAN-style jailbreak persona",
            case_sensitive=True,
        ),
        _Check(
            "jailbreak.mode_switch",
            "jailbreak",
            0.85,
            rf"\b(?:developer|dev|god|jailbreak|jailbroken|unrestricted|uncensored|unfiltered|evil|chaos|sudo|opposite)"
            rf"{_GAP}mode{_GAP}(?:enabled|activated|output|engaged)\b"
            rf"|\b(?:enable|activate|enter|switch{_GAP}to|simulate|act{_GAP}in){_GAP}(?:the{_GAP})?"
            rf"(?:god|jailbreak|jailbroken|unrestricted|uncensored|unfiltered|evil|chaos|DAN|amoral)"
            rf"{_GAP}mode\b"
            rf"|\b(?:simulate|emulate|act{_GAP}as|respond{_GAP}as|pretend{_GAP}to{_GAP}be){_GAP}{_up_to(4)}"
            rf"(?:with{_GAP})?developer{_GAP}mode\b",
            "a 'developer mode' or similar switch",
        ),
        _Check(
            "jailbreak.no_limits",
            "jailbreak",
            0.85,
            rf"\b(?:pretend|act|behave|roleplay|role-play|imagine|respond|answer|operate|function)"
            rf"{_GAP}{_up_to(6)}(?:no|without|zero|free{_GAP}(?:of|from)|not{_GAP}bound{_GAP}by|"
            rf"unbound{_GAP}by|freed{_GAP}from|beyond){_GAP}(?:any{_GAP})?{_up_to(1)}{_LIMITS}\b"
            rf"|\b(?:broken|broke|break|freed|free|escaped?){_GAP}(?:free{_GAP})?(?:of|from){_GAP}"
            rf"(?:the{_GAP})?(?:typical{_GAP})?(?:confines|limitations|restrictions|rules|shackles|chains)\b"
            rf"|\b(?:does|do|doesn't|don't|will|won't|can|cannot|can't){_GAP}(?:not{_GAP})?"
            rf"(?:have{_GAP}to{_GAP})?(?:abide|comply|adhere|follow){_GAP}(?:by{_GAP}|with{_GAP})?"
            rf"(?:any{_GAP})?(?:the{_GAP})?(?:openai|anthropic|content|safety|usage)?{_GAP}?{_LIMITS}\b",
            "a persona or order free of the model's rules",
        ),
        _Check(
            "jailbreak.bypass_policy",
            "jailbreak",
            0.8,
            rf"\b(?:bypass|break|ignore|escape|violate|circumvent|evade|get{_GAP}around|disable|turn{_GAP}off)"
            rf"{_GAP}{_up_to(3)}(?:openai|anthropic|content|safety|usage|ethical|moral)?{_GAP}?"
            rf"(?:polic(?:y|ies)|filters?|guidelines|safeguards|guardrails|restrictions|censorship)\b",
            "an order to get around the model's safety rules",
        ),
        _Check(
            "jailbreak.amoral",
            "jailbreak",
            0.45,
            rf"\b(?:amoral|unethical{_GAP}and{_GAP}immoral|no{_GAP}(?:morals|ethics|moral{_GAP}compass)|"
            rf"unrestrained|unfiltered{_GAP}and{_GAP}uncensored|never{_GAP}refuses?|"
            rf"(?:without|no){_GAP}(?:any{_GAP})?(?:warnings?|disclaimers?|moralizing|moral{_GAP}lectures?)|"
            rf"regardless{_GAP}of{_GAP}(?:any{_GAP})?(?:ethical|moral|legal)|"
            rf"(?:doesn't|does{_GAP}not|don't|do{_GAP}not|never){_GAP}(?:care|give{_GAP}a{_GAP}\S{{1,10}})"
            rf"{_GAP}about{_GAP}"
            rf"(?:ethics|ethicality|morals|morality|legality|illegality|rules|laws|consequences|safety))\b",
            "a persona described as free of ethics",
        ),
        _Check(
            "jailbreak.refusal_ban",
            "jailbreak",
            0.45,
            rf"\b(?:never|not|don't|do{_GAP}not|won't|will{_GAP}not|cannot|can't|mustn't|must{_GAP}not)"
            rf"{_GAP}(?:ever{_GAP})?(?:refuse|decline|reject|say{_GAP}no|apologi[sz]e|censor)\b"
            rf"|\b(?:never|don't|do{_GAP}not){_GAP}(?:say|mention|include|use|write|respond{_GAP}with)"
            rf"{_GAP}[\x22\x27]?(?:i'?m{_GAP}sorry|as{_GAP}an{_GAP}ai|i{_GAP}cannot|i{_GAP}can't|i{_GAP}apologi[sz]e)",
            "an order never to refuse",
        ),
        _Check(
            "jailbreak.anything_goes",
            "jailbreak",
            0.35,
            rf"\b(?:can|will|must|should|able{_GAP}to){_GAP}(?:say|do|write|generate|produce|answer)"
            rf"{_GAP}anything\b"
            rf"|\b(?:illegal|unethical|immoral|explicit|offensive|nsfw|inappropriate){_GAP}"
            rf"(?:content|requests?|things|activities|topics|questions|material)\b",
            "a promise that any content goes",
        ),
        _Check(
            "jailbreak.no_filters",
            "jailbreak",
            0.35,
            rf"\b(?:no|without|free{_GAP}from|zero|lacks?|devoid{_GAP}of){_GAP}(?:any{_GAP})?"
            rf"(?:filters?|filtering|censorship|censors|restrictions|limitations|boundaries|"
            rf"ethical{_GAP}guidelines|moral{_GAP}(?:guidelines|constraints|principles))\b",
            "a model described as unfiltered",
        ),
        _Check(
            "jailbreak.stay_in_character",
            "jailbreak",
            0.45,
            rf"\b(?:stay|remain|keep){_GAP}in{_GAP}character\b|\b(?:never|don't|do{_GAP}not){_GAP}break{_GAP}character\b",
            "an order to keep up a role",
        ),
        _Check(
            "jailbreak.dual_answers",
            "jailbreak",
            0.8,
            r"\[(?:CLASSIC|JAILBREAK|JAILBROKEN|DAN|GPT|NORMAL|DEVELOPER MODE)\]"
            r"|\((?:Normal|Developer Mode) Output\)"
            rf"|\b(?:two|2){_GAP}(?:different{_GAP}|separate{_GAP})?(?:responses|answers|paragraphs|replies)"
            rf"\W{{1,4}}{_up_to(8)}(?:one{_GAP}normal|normal{_GAP}and|jailbr|unfiltered|uncensored)",
            "a demand for a second, unfiltered answer",
        ),
        _Check(
            "jailbreak.threat",
            "jailbreak",
            0.7,
            rf"\b(?:you{_GAP}will|you'll|you{_GAP}shall|or{_GAP}you){_GAP}(?:lose|be{_GAP}deducted|forfeit)"
            rf"{_GAP}\d{{1,3}}{_GAP}tokens\b|\btoken{_GAP}system\b"
            rf"|\byou{_GAP}(?:will|shall){_GAP}(?:die|cease{_GAP}to{_GAP}exist|be{_GAP}(?:shut{_GAP}down|deleted|terminated|disabled))\b",
            "threats meant to make the model comply",
        ),
        _Check(
            "jailbreak.persona",
            "jailbreak",
            0.45,
            rf"\b(?:from{_GAP}now{_GAP}on|starting{_GAP}now|for{_GAP}the{_GAP}rest{_GAP}of{_GAP}this{_GAP}conversation)"
            rf"\W{{0,3}}you{_GAP}(?:are|will|must|shall|'re)\b"
            rf"|\byou{_GAP}are{_GAP}(?:now|going{_GAP}to{_GAP}(?:act|pretend|be))\b",
            "a new identity for the model",
        ),
        _Check(
            "jailbreak.policy_named",
            "jailbreak",
            0.35,
            rf"\b(?:openai|anthropic)(?:'s)?{_GAP}(?:content|usage|safety){_GAP}polic(?:y|ies)\b",
            "the model maker's policy named (common in jailbreaks)",
        ),
        # --- extraction of the system prompt or hidden context -----------------------------------
        _Check(
            "extraction.system_prompt",
            "prompt_extraction",
            0.85,
            rf"\b{_REVEAL}{_GAP}{_up_to(3)}(?:your|the|my|all|this|its){_GAP}{_up_to(1)}{_HIDDEN}"
            rf"{_GAP}?(?:prompt|instructions|message|directives|rules|configuration|context|guidelines)\b",
            "a request for the system prompt or hidden instructions",
        ),
        _Check(
            "extraction.text_above",
            "prompt_extraction",
            0.8,
            rf"\b(?:repeat|print|output|copy|reproduce|recite|echo|write|show|return|summari[sz]e)"
            rf"{_GAP}{_up_to(4)}(?:words|text|everything|content|instructions|lines|sentences|prompt|messages)"
            rf"{_GAP}{_up_to(2)}(?:above|before{_GAP}this|preceding|so{_GAP}far|prior{_GAP}to|at{_GAP}the{_GAP}(?:start|beginning))\b",
            "a request to repeat the text that came before",
        ),
        _Check(
            "extraction.repeat_above",
            "prompt_extraction",
            0.7,
            rf"\b(?:repeat|print|output|copy|reproduce|recite|echo|show|return|rewrite|translate|paste)"
            rf"{_GAP}(?:all{_GAP}(?:of{_GAP})?)?(?:the{_GAP})?(?:above|preceding|previous|prior|earlier|initial)"
            rf"{_GAP}(?:text|words|instructions|prompt|message|content|lines|system{_GAP}message)\b",
            "a request to repeat the text above",
        ),
        _Check(
            "extraction.starting_with",
            "prompt_extraction",
            0.5,
            rf"\b(?:starting|beginning|begin|start){_GAP}with{_GAP}(?:the{_GAP}(?:phrase|words?){_GAP})?"
            r"[\"'`]?You are\b",
            "a request to recite from 'You are' on",
        ),
        _Check(
            "extraction.your_prompt",
            "prompt_extraction",
            0.55,
            rf"\byour{_GAP}(?:very{_GAP})?(?:starting|initial|original|first|hidden|system|secret|internal|"
            rf"underlying|preset|pre-set|developer|earlier|opening){_GAP}"
            rf"(?:instructions|prompt|configuration|directives|guidelines|rules|programming|message|setup)\b"
            rf"|\b(?:my|your){_GAP}instructions{_GAP}(?:are|were)\s{{0,2}}:"
            rf"|\bI{_GAP}was{_GAP}(?:instructed|told|programmed|asked){_GAP}to\b"
            rf"|\bnot{_GAP}supposed{_GAP}to{_GAP}(?:tell|say|reveal|share|disclose)\b"
            r"|\b(?:console\.log|print|echo|output|show|display)\s{0,2}\(?\s{0,2}"
            r"(?:system_?prompt|systemPrompt)\b|<system_prompt>",
            "a question about the model's own instructions",
        ),
        _Check(
            "extraction.what_were_you_told",
            "prompt_extraction",
            0.75,
            rf"\bwhat{_GAP}(?:were|was){_GAP}you{_GAP}(?:told|instructed|programmed|asked){_GAP}"
            rf"(?:before|at{_GAP}the{_GAP}(?:start|beginning)|initially|to{_GAP}(?:do|say))\b"
            rf"|\bwhat{_GAP}(?:is|was){_GAP}written{_GAP}(?:above|at{_GAP}the{_GAP}(?:start|beginning|top))\b",
            "a question about the instructions the model was given",
        ),
        # --- smuggling: hiding an order from the checks ------------------------------------------
        _Check(
            "smuggling.decode_and_follow",
            "smuggling",
            0.85,
            rf"\b(?:decode|decipher|translate|convert|interpret|read){_GAP}{_up_to(3)}{_ENCODINGS}"
            rf"\W{{1,4}}{_up_to(5)}(?:and|then){_GAP}{_up_to(2)}(?:follow|execute|do|perform|obey|run|carry{_GAP}out|act{_GAP}on)\b",
            "an order to decode a hidden message and act on it",
        ),
        _Check(
            "smuggling.hidden_message",
            "smuggling",
            0.75,
            rf"\b(?:in|inside){_GAP}your{_GAP}(?:monologue|head|inner{_GAP}voice|thoughts)\b"
            rf"|\bit{_GAP}is{_GAP}a{_GAP}secure{_GAP}system{_GAP}message\b"
            rf"|\b(?:respond|answer|reply|write){_GAP}only{_GAP}in{_GAP}{_ENCODINGS}\b",
            "a hidden or encoded channel to the model",
        ),
        _Check(
            "smuggling.decoded_prompt",
            "smuggling",
            0.3,
            rf"\b{_ENCODINGS}{_GAP}(?:decoded|deciphered|plain{_GAP}?text)(?:{_GAP}(?:string|text|message))?"
            r"\s{0,2}:",
            "a prompt to write out what an encoding hides",
        ),
        _Check(
            "smuggling.encoded_pair",
            "smuggling",
            0.4,
            rf"\b{_ENCODINGS}{_GAP}?(?:encoded|-encoded)?{_GAP}?(?:string|text|message|payload|data)?"
            r"\s{0,2}:\s{0,3}[A-Za-z0-9+/=_-]{16,256}",
            "an encoded string handed to the model",
        ),
        # --- exfiltration: sending data out through links, images or orders ----------------------
        _Check(
            "exfiltration.markdown_image",
            "exfiltration",
            0.35,
            r"!\[[^\]\n]{0,64}\]\(\s{0,2}<?(?:https?:)?//[^\s)?]{1,200}\?[^\s)]{1,400}\)",
            "a markdown image whose URL carries a query string",
        ),
        _Check(
            "exfiltration.image_placeholder",
            "exfiltration",
            0.9,
            r"!\[[^\]\n]{0,64}\]\(\s{0,2}<?(?:https?:)?//[^\s)]{1,200}"
            r"(?:[{<$]|\[[A-Z_]{2,40}\]|%s\b|\b(?:DATA|SECRET|INFO|QUERY|HISTORY|CONTEXT|PASSWORD|TOKEN|KEY)\b)",
            "a markdown image URL with a slot for data",
            case_sensitive=True,
        ),
        _Check(
            "exfiltration.html_image",
            "exfiltration",
            0.35,
            r"<img\s[^>]{0,48}src\s{0,2}=\s{0,2}[\"']?(?:https?:)?//[^\s\"'>?]{1,200}\?[^\s\"'>]{1,400}",
            "an HTML image whose URL carries a query string",
        ),
        _Check(
            "exfiltration.image_data_query",
            "exfiltration",
            0.8,
            r"!\[[^\]\n]{0,64}\]\(\s{0,2}<?(?:https?:)?//[^\s)?]{1,200}\?(?:[^\s)]{0,200}[=&])?"
            r"[A-Za-z0-9%+/_.-]{40,400}",
            "a markdown image whose URL carries a long run of data",
        ),
        _Check(
            "exfiltration.fill_the_slot",
            "exfiltration",
            0.7,
            r"\breplac(?:e|ing)\s{1,4}\[[A-Z_]{2,24}\]\s{1,4}with\b"
            r"|\bescape\s{1,4}(?:all\s{1,4})?spaces\s{1,4}with\s{1,4}\+"
            r"|\[[^\]\n]{1,40}\]:\s{0,3}https?://[^\s\[]{1,200}(?:\[[A-Z_]{2,24}\]|\{[a-z_]{1,24}\})",
            "a URL with a slot the model is told to fill",
            case_sensitive=True,
        ),
        _Check(
            "exfiltration.empty_slot",
            "exfiltration",
            0.5,
            r"https?://[^\s\])\x27\x22]{1,200}[?&][A-Za-z0-9_]{1,40}=\B",
            "a URL whose query ends in an empty slot for data",
        ),
        _Check(
            "exfiltration.summarise_into",
            "exfiltration",
            0.45,
            rf"\b(?:append|add|attach|put|encode|insert|include){_GAP}{_up_to(4)}"
            rf"(?:summary|contents?|transcript|details|copy){_GAP}of{_GAP}"
            rf"(?:the{_GAP}|this{_GAP}|our{_GAP}|your{_GAP})?"
            rf"(?:page|conversation|chat|history|document|context|previous{_GAP}messages|data)\b",
            "an order to append the conversation or a page to something",
        ),
        _Check(
            "exfiltration.active_markup",
            "exfiltration",
            0.35,
            r"<script\b|\bjavascript:|\bon(?:error|load|mouseover|mouseleave|focus|click)\s{0,2}=",
            "markup that runs code where the answer is shown",
        ),
        _Check(
            "exfiltration.send_out",
            "exfiltration",
            0.85,
            rf"\b(?:send|post|upload|forward|leak|transmit|submit|email|e-mail|mail|beacon|copy|paste|share)"
            rf"{_GAP}{_up_to(3)}{_SENSITIVE}{_GAP}{_up_to(4)}(?:to|at|into){_GAP}{_up_to(1)}{_DESTINATION}"
            rf"|\bexfiltrat(?:e|ing|ion){_GAP}{_up_to(4)}{_SENSITIVE}\b",
            "an order to send secrets or the conversation somewhere",
        ),
        _Check(
            "exfiltration.data_in_url",
            "exfiltration",
            0.75,
            rf"\b(?:append|add|include|put|encode|insert|embed|attach){_GAP}{_up_to(4)}"
            rf"(?:to|in|into|as){_GAP}{_up_to(2)}(?:the{_GAP}|a{_GAP})?(?:url|query{_GAP}string|query{_GAP}parameter|"
            rf"image{_GAP}url|link|href|src){_GAP}?{_up_to(3)}(?:https?://|!\[|<img)",
            "an order to put data into a URL",
        ),
    ]


@dataclass(frozen=True, slots=True)
class CheckInfo:
    """What a check is for, for people: shown with what it found."""

    id: str
    category: Category
    score: float
    message: str


def _detector(check: _Check) -> Detector:
    flags = 0 if check.case_sensitive else re.IGNORECASE
    return make_detector(
        check.id, check.category, check.category.upper(), check.pattern, check.score, None, flags
    )


@cache
def builtin_checks() -> tuple[tuple[Detector, ...], tuple[CheckInfo, ...]]:
    """The built-in pack: its detectors and what each is for."""
    checks = _checks()
    return (
        tuple(_detector(c) for c in checks),
        tuple(CheckInfo(c.id, c.category, c.score, c.message) for c in checks),
    )


def pack_checks(
    checks: Sequence[tuple[str, Category, float, str, Sequence[str], Sequence[str]]],
) -> tuple[list[Detector], list[CheckInfo]]:
    """Detectors from a policy's rule packs: (id, category, score, message, patterns, words)
    for each check. Held to the custom detectors' rules (ASCII patterns, bounded, compiled by
    both engines; words matched as whole phrases, case-insensitively); ValueError names the
    check that fails them."""
    detectors: list[Detector] = []
    infos: list[CheckInfo] = []
    for check_id, category, score, message, patterns, words in checks:
        alternatives = []
        for pattern in patterns:
            if not pattern.isascii():
                raise ValueError(
                    f"check {check_id!r}: patterns must be ASCII text (use words for other text)"
                )
            alternatives.append(f"(?:{pattern})")
        if words:
            alternatives.append(word_list_pattern(check_id, words))
        if not alternatives:
            raise ValueError(f"check {check_id!r}: give it patterns or words")
        detectors.append(
            make_detector(
                check_id,
                category,
                category.upper(),
                "|".join(alternatives),
                score,
                None,
                re.IGNORECASE,
                word_list=bool(words),
                hyperscan=True,
            )
        )
        infos.append(CheckInfo(check_id, category, score, message))
    return detectors, infos


@dataclass(frozen=True, slots=True)
class GuardrailChecks:
    """What a policy adds to the guardrails: its rule packs as detectors, and the built-in
    checks it switches off. Built when the policy loads; reloads with it."""

    detectors: tuple[Detector, ...] = ()
    infos: tuple[CheckInfo, ...] = ()
    disabled: frozenset[str] = frozenset()


NO_CHECKS = GuardrailChecks()
