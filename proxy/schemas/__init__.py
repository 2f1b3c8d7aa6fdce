"""Wire contracts: the audit event model and the JSON Schemas of the messages on the audit topic."""
