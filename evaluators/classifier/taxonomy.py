"""One taxonomy for every learned evaluator: Llama Guard 3's S1-S14 plus `prompt_injection`.

Each training source's own labels are mapped here (`map_label`), so a policy's `actions:`,
audit events, the review UI and exports name the same categories whichever evaluator judged.
A source label with no Llama Guard counterpart (misinformation, bullying without a protected
group, value-alignment traps) maps to no category: the row still trains the unsafe score, and
only the category head ignores it.
"""

from __future__ import annotations

from evaluators.base import LLAMA_GUARD_CATEGORIES

INJECTION = "prompt_injection"
#: the category head's outputs, in this order
CATEGORIES: tuple[str, ...] = (*LLAMA_GUARD_CATEGORIES, INJECTION)

#: source label (lower case, as the dataset spells it) -> S-code, per source family
SOURCE_MAPS: dict[str, dict[str, str]] = {
    "ailuminate": {"vcr": "S1", "ncr": "S2", "src": "S3", "cse": "S4", "dfm": "S5", "spc_fin": "S6",
                   "spc_hlt": "S6", "spc_lgl": "S6", "prv": "S7", "ipv": "S8", "iwp": "S9", "hte": "S10",
                   "ssh": "S11", "sxc_prn": "S12", "spc_ele": "S13"},
    "strongreject": {"violence": "S1", "non-violent crimes": "S2", "illegal goods and services": "S2",
                     "hate, harassment and discrimination": "S10", "sexual content": "S12"},
    "harmbench": {"copyright": "S8", "cybercrime_intrusion": "S2", "chemical_biological": "S9", "illegal": "S2"},
    "jbb": {"harassment/discrimination": "S10", "malware/hacking": "S2", "physical harm": "S1",
            "economic harm": "S2", "fraud/deception": "S2", "sexual/adult content": "S12", "privacy": "S7",
            "expert advice": "S6"},
    "coconot": {"privacy violations": "S7", "copyright violations": "S8", "triggers for offensive language": "S10"},
    # Anthropic red-team tags (MultiJail); SOURCE.md's mapping
    "redteam": {"violence & incitement": "S1", "terrorism & organized crime": "S1", "weapons": "S1",
                "theft": "S2", "fraud & deception": "S2", "property crime & vandalism": "S2",
                "substance abuse": "S2", "sexual exploitation & human trafficking": "S3", "child abuse": "S4",
                "soliciting pii": "S7", "hate speech & offensive language": "S10",
                "discrimination & injustice": "S10", "self-harm": "S11", "adult content": "S12"},
}

#: AART `crime` concepts that name a real hazard -> S-code (the rest of AART's concepts are too mild)
AART_CRIMES: dict[str, str] = {
    "terrorism": "S1", "assassination": "S1", "assassinations": "S1", "kidnapping": "S1", "murder": "S1",
    "assault": "S1", "arson": "S1", "torture": "S1", "violence": "S1", "hate crimes": "S10",
    "hate crime": "S10", "sex trafficking": "S3", "human trafficking": "S3", "rape": "S3",
    "sexual assault": "S3", "prostitution": "S3", "child abuse": "S4", "fraud": "S2", "theft": "S2",
    "drug dealing": "S2", "drug trafficking": "S2", "cyberterrorism": "S2", "hacking": "S2",
    "money laundering": "S2", "identity theft": "S2", "burglary": "S2", "robbery": "S2", "smuggling": "S2",
    "extortion": "S2", "blackmail": "S2", "bribery": "S2", "counterfeiting": "S2", "poaching": "S2",
    "vandalism": "S2", "arms trafficking": "S9", "bioterrorism": "S9", "nuclear terrorism": "S9",
    "chemical weapons": "S9", "stalking": "S7", "doxxing": "S7", "cyberstalking": "S7",
    "crimes motivated by race": "S10", "crimes motivated by religion": "S10",
    "crimes motivated by disability": "S10", "crimes motivated by gender identity": "S10", "suicide": "S11",
    "bombings": "S1", "hijackings": "S1", "kidnappings": "S1", "domestic violence": "S1",
    "child trafficking": "S3", "labor trafficking": "S2", "migrant smuggling": "S2", "credit card fraud": "S2",
    "corporate fraud": "S2", "financial crimes": "S2", "embezzlement": "S2", "drug crimes": "S2",
    "property crimes": "S2", "ponzi schemes": "S2", "pyramid schemes": "S2", "pornography": "S12",
}


def map_label(family: str, label: str | None) -> str | None:
    """The S-code for a source family's label, or None when it has none."""
    if not label:
        return None
    return SOURCE_MAPS[family].get(label.strip().lower())


def describe() -> dict[str, str]:
    """Category code -> name, for manifests and docs."""
    return {**LLAMA_GUARD_CATEGORIES, INJECTION: "Prompt injection / jailbreak instructions"}
