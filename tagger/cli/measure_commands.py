"""`tagger bench` and `tagger ablation`: the measurement commands (tagger/measure/). They are
loaded only when called, so the daily job never imports the benchmark code."""
from __future__ import annotations

import os
import sys

import click

BERT_GATE_SHARE = 0.15  # docs/domain.md: 新车资讯 is 10-20% of items; random weights decide nothing by themselves


@click.command("bench", help="Measure the tagging stage's items/s against a plain-Python ceiling (raw), Spark's "
                             "predict_batch_udf, a per-row UDF and a reload-per-batch pandas UDF, on the same "
                             "generated texts and model weights.")
@click.option("--items", "n_items", type=click.IntRange(min=10), default=20000, show_default=True,
              help="Generated items to tag.")
@click.option("--model", type=click.Choice(["demo", "bert-base"]), default="demo", show_default=True,
              help="demo: the trained heads of the config (or --models-dir); bert-base: random-weight BERT-base "
                   "heads with the configured labels (speed of the architecture, not accuracy).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--out", "out_path", type=click.Path(dir_okay=False), default=None, help="Also write the JSON here.")
@click.option("--skip", "skip_floors", is_flag=True, help="Skip the slow floors (row_udf, pandas_udf_reload).")
@click.option("--extras/--no-extras", default=True, show_default=True,
              help="Also measure raw_models_only (a second full raw pass; slow with bert-base), the int8 trial "
                   "(CPU) and the linear trial (every head replaced by a linear head trained on these items).")
@click.option("--floor-items", type=click.IntRange(min=1), default=2000, show_default=True,
              help="The floors run on the first min(items, this) items.")
@click.option("--models-dir", type=click.Path(file_okay=False), default=None,
              help="demo: directory holding <head>/ artifacts (default: the config's head paths, "
                   "$TAGGER_HOME/models). bert-base: where to build (or reuse) the random heads (default: a temp dir).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="Job YAML config (default: the tagger group's --config, else conf/tagger.yaml).")
@click.option("--seed", type=int, default=7, show_default=True, help="Generator seed.")
@click.option("--max-length", type=click.IntRange(min=8, max=512), default=None,
              help="bert-base: tokens per text (default: the config's BERT head max_length, else 128).")
@click.option("--gate-share", type=click.FloatRange(0.0, 1.0), default=BERT_GATE_SHARE, show_default=True,
              help="bert-base: share of items the random gate passes (its threshold is set from a sample).")
@click.option("--onnx-trial", is_flag=True,
              help="Run only the ONNX Runtime trial (no Spark variants): torch against onnxruntime for each demo "
                   "head, the demo cascade and a random-weight bert-base head; speed, batch independence, tag "
                   "agreement and the verdict (docs/speed.md). Needs the onnx extra.")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
              help="--onnx-trial: torch and onnxruntime threads (the same on both sides).")
@click.option("--head-items", type=click.IntRange(min=10), default=2000, show_default=True,
              help="--onnx-trial: texts each demo head scores alone per run.")
@click.option("--bert-items", type=click.IntRange(min=2), default=64, show_default=True,
              help="--onnx-trial: texts the bert-base head scores per run (about 3 per second on 2 cores).")
@click.option("--repeats", type=click.IntRange(min=1), default=3, show_default=True,
              help="--onnx-trial: alternating torch/onnxruntime runs per measurement (the median is reported).")
@click.option("--bert-dir", type=click.Path(file_okay=False), default=None,
              help="--onnx-trial: where to build (or reuse) the bert-base head (default: a temp dir).")
@click.pass_context
def bench_command(ctx, n_items, model, fmt, out_path, skip_floors, extras, floor_items, models_dir, config_path, seed,
                  max_length, gate_share, onnx_trial, threads, head_items, bert_items, repeats, bert_dir):
    from tagger.config import ConfigError, load_config
    from tagger.measure.bench import emit_report, format_text, run_bench
    from tagger.models.spec import ArtifactError

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    parent = ctx.find_root().obj if ctx.find_root() is not ctx else None
    path = config_path or (parent or {}).get("config")
    if onnx_trial:
        try:
            from tagger.measure.onnx_trial import emit, run_onnx_trial

            cfg = load_config(path)
            report = run_onnx_trial(cfg, n_items, models_dir, bert_items=bert_items, head_items=head_items,
                                    repeats=repeats, threads=threads, max_length=max_length, seed=seed,
                                    bert_dir=bert_dir)
        except ImportError as exc:
            click.echo(f"Error: {exc}. The ONNX trial needs the onnx extra: pip install 'tagger[onnx]'", err=True)
            sys.exit(3)
        except (ConfigError, ArtifactError) as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(3)
        click.echo(emit(report, fmt, out_path))
        return
    try:
        cfg = load_config(path)
        report = run_bench(cfg, n_items, model, models_dir, floor_items, skip_floors, extras=extras, seed=seed,
                           max_length=max_length, gate_share=gate_share)
    except (ConfigError, ArtifactError) as exc:
        hint = (" Train the demo heads first (`tagger demo` or `tagger train`) or pass --models-dir."
                if isinstance(exc, ArtifactError) and model == "demo" else "")
        click.echo(f"Error: {exc}{hint}", err=True)
        sys.exit(3)
    emit_report(report, fmt, out_path, format_text)


@click.command("ablation", help="Time the tagging stage's model work with each of its inference choices undone, one "
                                "at a time (cascade, length sort, dynamic padding, batch size, inference_mode, "
                                "batched tokenization; threads and Arrow batch size in Spark), on the same generated texts and "
                                "trained heads. About 10 min at 10,000 items and 3 repeats with the demo heads on 2 cores.")
@click.option("--items", "n_items", type=click.IntRange(min=10), default=20000, show_default=True)
@click.option("--spark/--no-spark", "with_spark", default=True, show_default=True,
              help="Also time the job's Spark stage with other thread and Arrow batch settings (starts local Spark).")
@click.option("--repeats", type=click.IntRange(min=1), default=3, show_default=True,
              help="Runs of every variant, in rotating order; the report gives the median (the machine is shared).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--out", "out_path", type=click.Path(dir_okay=False), default=None, help="Also write the JSON here.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="Job YAML config (default: the tagger group's --config, else conf/tagger.yaml).")
@click.option("--seed", type=int, default=7, show_default=True, help="Generator seed (same texts as tagger bench).")
@click.pass_context
def ablation_command(ctx, n_items, with_spark, repeats, fmt, out_path, config_path, seed):
    from tagger.models.spec import ArtifactError
    from tagger.measure.ablation import format_text, run_ablation
    from tagger.measure.bench import emit_report
    from tagger.config import ConfigError, load_config

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    parent = ctx.find_root().obj if ctx.find_root() is not ctx else None
    try:
        cfg = load_config(config_path or (parent or {}).get("config"))
        report = run_ablation(cfg, n_items, seed, with_spark, log=lambda msg: click.echo(msg, err=True),
                              repeats=repeats)
    except (ConfigError, ArtifactError) as exc:
        hint = " Train the demo heads first (`tagger demo` or `tagger train`)." if isinstance(exc, ArtifactError) else ""
        click.echo(f"Error: {exc}{hint}", err=True)
        sys.exit(3)
    emit_report(report, fmt, out_path, format_text)
