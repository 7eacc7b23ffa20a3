"""The model lifecycle around the daily job (docs/lifecycle.md): a registry of head versions with a
`champion` alias (MLflow), the golden-set gate that guards the alias, label-noise triage and sampling
for annotators.

Only `uris` is light: the job imports it to tell a `models:/` head path from a directory. Everything
else imports mlflow or cleanlab (the `lifecycle` extra) and is loaded only by its command, or when a
head path is `models:/...`.
"""
