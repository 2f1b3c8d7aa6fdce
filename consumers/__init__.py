"""Consumers of the audit stream: review store and UI, dataset export, metrics dashboard."""
