"""`tagger`: the command line of the daily tagging job.

Exit codes a scheduler can act on: 0 done; 2 bad usage (nothing ran); 3 bad configuration or
model artifact (fix it, then rerun); 4 an input is missing (retry later); 5 another run holds the
same table and date, or the embedded metastore, or (preflight) HiveServer2 is unreachable
(retry later); 6 a gate refused (the audits refused a day: it stays staged, nothing was
published; review, then `tagger publish` it or fix and rerun; a retry cannot help; or the
golden-set gate refused `tagger promote`: the champion alias stayed); 1 anything else.

Commands live in four modules by audience (job_commands, model_commands, measure_commands,
lifecycle_commands)
and are imported only when called: `tagger run` (and spark-submit jobs/tag_daily.py) never
imports the model workbench or the benchmarks.
"""
from __future__ import annotations

import importlib
import os

import click


COMMANDS = {  # name -> "module:attribute"
    **{name: f"tagger.cli.job_commands:{attr}" for name, attr in [
        ("run", "run"), ("backfill", "backfill"), ("demo", "demo"), ("seed", "seed"), ("sql", "sql"),
        ("preflight", "preflight_command"), ("publish", "publish_command"), ("history", "history_command"),
        ("rollback", "rollback_command"), ("report", "report_command")]},
    **{name: f"tagger.cli.model_commands:{name}_command" for name in
       ["train", "split", "evaluate", "calibrate", "ensemble", "embeddings", "distill"]},
    "export-onnx": "tagger.cli.model_commands:export_onnx_command",
    "knn-build": "tagger.cli.model_commands:knn_build_command",
    "knn-add": "tagger.cli.model_commands:knn_add_command",
    "llm-head": "tagger.cli.model_commands:llm_head_command",
    **{name: f"tagger.cli.measure_commands:{name}_command" for name in ["bench", "ablation"]},
    **{name: f"tagger.cli.lifecycle_commands:{name.replace('-', '_')}_command" for name in
       ["register", "promote", "rollback-model", "shadow", "triage", "sample"]},
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use (click's documented pattern)."""

    def list_commands(self, ctx):
        """The subcommand names of COMMANDS, sorted (nothing is imported)."""
        return sorted(COMMANDS)

    def get_command(self, ctx, name):
        """The click command `name`, its module imported now; None for a name not in COMMANDS (click
        then reports "No such command"). An ImportError of the command's module propagates."""
        if name not in COMMANDS:
            return None
        module, attr = COMMANDS[name].split(":")
        return getattr(importlib.import_module(module), attr)


@click.group(cls=LazyGroup, help=__doc__.split("\n\nCommands live")[0])
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="Job YAML config (default: the conf/tagger.yaml shipped with the package).")
@click.option("--verbose", is_flag=True,
              help="Spark's default logging (WARN and up) instead of errors only; "
                   "also TAGGER_VERBOSE=1.")
@click.pass_context
def main(ctx: click.Context, config_path: str | None, verbose: bool) -> None:
    ctx.ensure_object(dict)
    ctx.obj["config"] = config_path
    if verbose:  # read by tagger.ops.spark_session when it builds the session, and by the workers
        os.environ["TAGGER_VERBOSE"] = "1"


if __name__ == "__main__":
    main()
