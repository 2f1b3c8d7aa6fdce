"""Cheap rule evaluators: PII, secrets, prompt injection, hidden Unicode, configurable blocklists.

One module per engine, each with a `create(name, options)` factory (see
`evaluators/registry.py`); `redact.redact` masks their findings.
"""
