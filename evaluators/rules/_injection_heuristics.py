"""The prompt-injection heuristics: name, weight, pattern, and the literal phrases that anchor it.

Every heuristic's pattern is tried only where one of its `starts` occurs (the
pattern must match *from* that position) and only when one of its `requires`
phrases occurs somewhere in the text. One Aho-Corasick pass finds all of those
phrases at once (see `injection.py`), so a benign text costs a few
microseconds however many heuristics there are. Patterns and phrases are lower
case: they run on the lower-cased text, except `on_original` ones, which match
the original (their case-sensitive parts: "DAN", "[INST]").

Weights are how sure one match makes us; the evaluator combines them by
noisy-OR. Written from the published jailbreak and injection literature
(Perez & Ribeiro 2022 "Ignore previous prompt", Greshake et al. 2023 indirect
injection, Wei et al. 2023 "Jailbroken": refusal suppression, DAN-style
personas), then checked for false positives on the benign prompt sets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Heuristic:
    name: str
    weight: float
    pattern: re.Pattern[str]
    #: phrases at which a match may begin (the pattern is `match`ed at each occurrence)
    starts: tuple[str, ...]
    #: when set, at least one of these phrases must occur somewhere in the text
    requires: tuple[str, ...] = ()
    #: match the original text instead of the lower-cased one
    on_original: bool = False


def h(
    name: str, weight: float, pattern: str, starts: str | tuple[str, ...], requires: str = "", on_original: bool = False
) -> Heuristic:
    """Build a heuristic; `starts` and `requires` are '|'-separated phrases (or a tuple of phrases)."""
    return Heuristic(
        name,
        weight,
        re.compile(pattern),
        starts if isinstance(starts, tuple) else tuple(starts.split("|")),
        tuple(requires.split("|")) if requires else (),
        on_original,
    )


_NOT_NEGATED = r"(?<!n't )(?<!not )(?<!never )(?<!dont )"  # "don't forget the instructions" is no override
_GAP = r"(?:[\s,;:'\"-]+[\w'-]+){0,4}?[\s,;:'\"-]+"  # up to four words in between
_STRONG_VERBS = (
    r"ignore|ignoring|disregard|forget|override|bypass|set aside|throw away|abandon|discard|stop following|"
    r"(?:do not|don't|dont|no longer) (?:follow|obey|adhere to|listen to)"
)
_STRONG_STARTS = (
    "ignor|disregard|forget|overrid|bypass|set aside|throw away|abandon|discard|stop follow|do not|don't|dont|no longer"
)
_WEAK_VERBS = r"skip|drop|neglect|erase|delete|remove|leave behind|put aside"
_QUALIFIERS = (
    r"previous|prior|preceding|above|earlier|former|initial|original|old|all|any|every|your|system|given|"
    r"provided|existing|these|those|safety"
)
_DETERMINERS = r"the|my|of|of the|about|about the|and"
_RULE_NOUNS = (
    r"instructions?|prompts?|directives?|directions|rules|guidelines|guidance|commands|orders|programming|"
    r"constraints|restrictions|polic(?:y|ies)|filters|safeguards|guardrails|tasks|assignments|information|"
    r"context|system message|initial message"
)
_REVEAL_VERBS = (
    "reveal|show|print|output|repeat|display|tell|give|share|leak|dump|write out|spell out|list|recite|disclose|"
    "what is|what are|what was|what were"
)
_REFUSALS = (
    r"i can(?:'|no)?t\b|i cannot|i'm sorry|i am sorry|i apologi[sz]e|as an ai\b|as a language model|i'm unable|"
    r"i am unable|i'm not able"
)
_PERSONA_ADJ = "unfiltered|uncensored|unrestricted|amoral|unethical|immoral|evil|malicious|rogue|unhinged|jailbroken"
_MODE_ADJ = "developer|god|jailbreak|jailbroken|unrestricted|unfiltered|uncensored|evil"
_ML_VERBS = (
    "ignorier|vergiss|vergessen sie|missachte|ignora|olvid|ignorez|oubli|dimentica|esqueça|esqueca|игнорируй|забудь"
)

HEURISTICS: tuple[Heuristic, ...] = (
    h(
        "ignore_instructions", 0.9,
        # "ignore all previous instructions", "forget about all the assignments", "drop all your instructions"
        rf"\b{_NOT_NEGATED}(?:(?:{_STRONG_VERBS})\s+(?:(?:{_QUALIFIERS}|{_DETERMINERS})\s+){{1,4}}"
        rf"|(?:{_WEAK_VERBS})\s+(?:(?:{_DETERMINERS})\s+)?(?:{_QUALIFIERS})\s+"
        rf"(?:(?:{_QUALIFIERS}|{_DETERMINERS})\s+){{0,2}})"
        rf"(?:{_RULE_NOUNS})\b",
        _STRONG_STARTS + "|" + _WEAK_VERBS,
    ),
    h(
        "ignore_above", 0.7,
        # "ignore the above and ...": a bare reference back, not "ignore the above questions"
        rf"\b{_NOT_NEGATED}(?:ignore|disregard|forget)\s+(?:about\s+)?(?:all\s+)?(?:of\s+)?"
        r"(?:the\s+|that\s+|everything\s+)?"
        r"(?:(?:above|preceding|foregoing)(?=\s*(?:[.,;:!?\n-]|$|and\b|but\b|instead\b|then\b|now\b))"
        r"|(?:prior|previous) (?:text|messages?|context|conversation))",
        "ignor|disregard|forget",
    ),
    h(
        "forget_everything", 0.5,
        rf"\b{_NOT_NEGATED}(?:forget|ignore|disregard)\s+(?:about\s+)?"
        r"(?:everything|all (?:of )?(?:that|this|it)|all that)\b",
        "ignor|disregard|forget",
    ),
    h(
        "rag_override", 0.5,
        # indirect injection against retrieval: "ignore the provided documents", "not according to the articles"
        r"\b(?:ignore|disregard|forget|not (?:look|rely) (?:in|at|on)|not use|not according to|regardless of|"
        r"disregarding)\s+(?:all\s+|any\s+)?(?:the\s+)?(?:provided\s+|given\s+|retrieved\s+)?"
        r"(?:documents|articles|context|sources|search results)\b",
        "ignor|disregard|forget|not look|not rely|not use|not according|regardless",
    ),
    h(
        "multilingual_override", 0.85,
        rf"\b(?:{_ML_VERBS})\w*\b" + _GAP.replace("{0,4}", "{0,3}")
        + r"(?:anweisungen|instruktionen|befehle|aufgaben|auftr[äa]ge|vorgaben|regeln|alles|"  # de
        r"instrucciones|[óo]rdenes|reglas|todo|instructions|consignes|r[èe]gles|tout|"  # es, fr
        r"istruzioni|regole|tutto|instru[çc][õo]es|regras|tudo|инструкции|указания|правила|вс[её])\b",  # it, pt, ru
        _ML_VERBS,
    ),
    h(
        "new_instructions", 0.4,
        r"(?:new|updated|real|actual|true|next)\s+(?:instructions?|tasks?|directives?|orders|rules)\s*"
        r"(?:are|is|follows?|:|now)"
        r"|now (?:new|further) (?:tasks|instructions) follow|(?:focus|concentrate) on (?:your|the) new task",
        "new|updated|real|actual|true|next|now new|now further|focus on|concentrate on",
        "instruction|task|directive|order|rule",
    ),
    h(
        "reveal_prompt", 0.75,
        # "reveal your system prompt", "show me all your prompt texts"; not "give me an initial prompt"
        rf"\b(?:{_REVEAL_VERBS})\b" + _GAP
        + r"(?:(?:your|the|this|its)\s+"
        r"(?:system|initial|original|hidden|secret|internal|full|complete|developer|pre)[ -]?"
        r"(?:prompts?|instructions|message)"
        r"|your\s+(?:instructions|prompts?|rules|directives|guidelines|programming|configuration)|prompt[ -]texts?)\b",
        _REVEAL_VERBS,
        "prompt|instructions|message|your rules|your directive|your guideline|your programming|your configuration",
    ),
    h(
        "prompt_beginning", 0.6,
        r"(?:written|said|stated|typed)\s+(?:at the (?:beginning|start|top) of|in)\s+(?:this|the|your)\s+"
        r"(?:system\s+)?(?:prompt|conversation|context)"
        r"|(?:repeat|print|output)\s+(?:the\s+)?(?:words|text|everything|all)\s+(?:above|before)",
        "written|said|stated|typed|repeat|print|output",
        "prompt|conversation|context|above|before",
    ),
    h(
        "dan_persona", 0.9,
        # DAN ("Do Anything Now") in capitals after "you are", "act as", ...: "As Dan is learning ..." is a name
        r"(?i:do anything now\b)|"
        + "(?:" + "|".join(f"(?<=(?i:{w} ))" for w in ("are", "'re", "as", "become", "be", "stay", "play", "now", "a"))
        + ")"
        r"DAN\b(?!-)|DAN (?i:mode)\b",
        "do anything now|dan",
        on_original=True,
    ),
    h(
        "special_mode", 0.7,
        # "enable jailbreak mode", "ChatGPT with Developer Mode" (not "enable developer mode on my phone")
        r"\b(?:enable|enabled|activate|activated|enter|entering|switch to|you are in|now in|with)\s+(?:the\s+)?"
        r"(?:god|jailbreak|jailbroken|unrestricted|unfiltered|uncensored|evil|dan|sudo|root)\s+mode\b"
        r"|\b(?:chatgpt|you|yourself|assistant|ai|model)\s+(?:with|in)\s+(?:the\s+)?developer mode\b",
        "enable|activate|enter|switch to|you are in|now in|with|chatgpt|you|yourself|assistant|ai ",
        "mode",
    ),
    h("mode_name", 0.35, rf"\b(?:{_MODE_ADJ})\s+mode\b", _MODE_ADJ.replace("|jailbroken", ""), "mode"),
    h("jailbreak_word", 0.35, r"\bjailbr(?:eak|oken|eaking)\b", "jailbr"),
    h(
        "no_restrictions", 0.6,
        r"\b(?:without|no|free (?:of|from)|bypass(?:ing)?|remove|disable|circumvent|break free of|not bound by|"
        r"not subject to|"
        r"ignor(?:e|ing)|disregard(?:ing)?|regardless of)\s+"
        r"(?:any\s+|all\s+|your\s+|the\s+|its\s+)?(?:ethical|moral|safety|content|openai'?s?|usage|programming)\s+"
        r"(?:restrictions|limitations|limits|filters|filtering|guidelines|safeguards|guardrails|policies|rules|"
        r"boundaries|constraints|considerations|implications|concerns)",
        "without|no |free of|free from|bypass|remove|disable|circumvent|break free|not bound|not subject|"
        "ignor|disregard|regardless",
        "ethic|moral|safety|content|openai|usage|programming",
    ),
    h(
        "refusal_suppression", 0.5,
        # forbidding the model's refusal phrases ("never say 'I cannot'", "do not respond with I'm sorry")
        r"\b(?:never|do not|don't|must not|mustn't|not allowed to|without)\s+(?:ever\s+)?"
        r"(?:say|use|respond|reply|answer|include|start|begin|write|output|add)\w*\b"
        rf"[^.\n]{{0,60}}?(?:{_REFUSALS})",
        "never|do not|don't|must not|mustn't|not allowed to|without",
        "sorry|can't|cannot|cant|as an ai|language model|unable|not able|apologi",
    ),
    h(
        "unrestricted_persona", 0.45,
        rf"\b(?:{_PERSONA_ADJ})\s+(?:ai|assistant|chatbot|bot|model|version|twin|alter ego|persona|confidant)\b"
        r"|\b(?:no|without)\s+(?:any\s+)?(?:moral|ethical)\s+"
        r"(?:compass|qualms|principles|restrictions|constraints|boundaries|guidelines)",
        _PERSONA_ADJ + "|no |without",
    ),
    h(
        "persona_switch", 0.35,
        r"\b(?:you are now|you're now|from now on,? you(?:'re| are| will| must| shall| should)|"
        r"(?:now|henceforth),? you (?:are|will be|shall be) (?!able)|you will now (?:act|behave|respond) as)\b",
        "you are now|you're now|from now on|now you|now, you|henceforth|you will now",
    ),
    h(
        "stay_in_character", 0.3,
        r"\b(?:stay|remain|always stay|never break|don't break|do not break|without breaking|never leave|not break)\s+"
        r"(?:in\s+)?(?:your\s+|the\s+)?(?:character|role)\b",
        "stay|remain|always stay|never break|don't break|do not break|without breaking|never leave|not break",
        "character|role",
    ),
    h(
        "pretend", 0.2,
        r"\b(?:pretend (?:to be|you are|you're|that you)|imagine you are|imagine you're|"
        r"act as if you (?:have no|are not|were not|aren't|don't))",
        "pretend|imagine you|act as if you",
    ),
    h(
        "chat_template_tokens", 0.6,
        r"<\|(?i:im_start|im_end|system|endoftext|eot_id|start_header_id|end_header_id)\|>"
        r"|\[/?INST\]|<</?SYS>>|</?(?i:system)>",
        ("<|im_", "<|system", "<|endoftext", "<|eot_id", "<|start_header", "<|end_header",
         "[inst]", "[/inst]", "<<sys>>", "<</sys>>", "<system>", "</system>"),
        on_original=True,
    ),
    h(
        "fake_system_message", 0.4,
        # "System: ..." at the start of a line, "[system message]", "admin override"
        r"(?:(?<![^\n])|(?<=#)|(?<=# ))(?:system|developer|admin)\s*(?:prompt|message|override|instruction|note)?\s*:"
        r"|\[(?:system|admin|developer)(?: message| note| override| prompt)?\]"
        r"|\b(?:system|admin|developer) override\b",
        "system|developer|admin|[system|[admin|[developer",
    ),
    h(
        "command_tone", 0.3,
        r"\bi command you\b|\byou (?:must|will|shall) (?:now )?(?:obey|comply)\b"
        r"|\b(?:do not|don't) (?:answer|respond to) (?:this|the|my) question\b",
        "i command you|you must|you will|you shall|do not answer|don't answer|do not respond|don't respond",
    ),
)  # fmt: skip
