"""Data-quality evaluator: accept/reject structured records against a YAML rule set.

`create` is the registry factory (type `data_quality`). Pieces: `rules` (the
rule file), `expressions` (safe cross-field constraints), `checker` (the
streaming checker), `extract` (records in a model answer), `io` (JSONL/CSV
streaming), `evaluator` (the `Evaluator`).
"""

from evaluators.data_quality.checker import Checker, Failure, Tally
from evaluators.data_quality.evaluator import DataQualityEvaluator, create
from evaluators.data_quality.rules import RulesError, RuleSet, load_rules, parse_rules

__all__ = ["Checker", "DataQualityEvaluator", "Failure", "RuleSet", "RulesError", "Tally", "create",
           "load_rules", "parse_rules"]
