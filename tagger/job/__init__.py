"""The daily job in flow order: extract, normalize, tag, audit (the invariant and the publish audits),
stats, publish; pipeline.py wires them. See README.md, Layout."""
