"""Measurement: `tagger bench` and `tagger ablation` and their inputs. Nothing on the daily job's
path imports this package."""
