"""Shared contracts, the one part of `proxy` the consumers may import (tests/test_layering.py): the audit event
model and the JSON Schemas of the messages on the audit topic (`events`), the consumers' config section
(`consumers`) and the config file's mechanics both sides use (`config_file`). Nothing here imports anything
else from the project."""
