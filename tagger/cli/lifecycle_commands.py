"""The model-lifecycle commands (docs/lifecycle.md): `tagger register`, `tagger promote`,
`tagger rollback-model`, `tagger shadow`, `tagger triage` and `tagger sample`.

mlflow and cleanlab (the `lifecycle` extra) are imported inside the commands that need them.

Exit codes: 0 done; 2 bad usage (an unknown registry version, --force without --reason, a shadow --head
or --candidate that cannot be used); 3 a bad
config, model artifact, data file or an unreachable registry; 6 the golden-set gate refused the
promotion (the alias stayed where it was); 1 anything else.
"""
from __future__ import annotations

import sys

import click

from tagger.cli.common import DATE, EXIT_CONFIG, EXIT_USAGE

_EXTRA = "pip install -e '.[lifecycle]'"


def _fail(message, code: int = EXIT_CONFIG):
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)


def _registry():
    """A Registry, or exit 3 naming the extra when mlflow is not installed."""
    try:
        from tagger.lifecycle.registry import Registry
        return Registry()
    except ImportError as exc:
        _fail(f"the model registry needs mlflow ({exc}). Fix: {_EXTRA}.")


def _registry_errors(fn):
    """Run fn(); an unknown registry version is one line and exit 2; a ConfigError (a RegistryError too),
    ArtifactError or DataError one line and exit 3."""
    from tagger.config import ConfigError
    from tagger.lifecycle.registry import UnknownVersionError
    from tagger.models.data import DataError
    from tagger.models.spec import ArtifactError

    try:
        return fn()
    except UnknownVersionError as exc:
        _fail(exc, EXIT_USAGE)
    except (ConfigError, ArtifactError, DataError) as exc:
        _fail(exc)


@click.command("register", short_help="Log a head artifact directory as a new version in the model registry.")
@click.option("--head", required=True, help="The registered model's name: the head's name (p0, p1, gate).")
@click.option("--model", "model_dir", required=True, type=click.Path(file_okay=False, exists=True),
              help="The head artifact directory (tagger_head.json, model.safetensors, MODEL_CARD.md, ...).")
@click.option("--alias", default=None, help="Also point this alias at the new version (e.g. challenger). "
                                            "`champion` is only moved by `tagger promote`.")
def register_command(head, model_dir, alias):
    """Log the head artifact in --model as the next version of the registered model --head: the
    directory's files as the run's `model` artifact, its dev metrics (from tagger_head.json) as
    metrics, its MODEL_CARD.md as the version's description. The registry is MLflow's: a SQLite
    store under $TAGGER_HOME/registry, or the server in $MLFLOW_TRACKING_URI.

    \b
    Example:
      tagger register --head p0 --model .tagger/models/p0
      tagger promote --head p0 --version 1
    """
    if alias == "champion":
        _fail("--alias champion: the champion alias is moved only by `tagger promote`, after the golden-set "
              "gate. Register, then `tagger promote --head HEAD --version V`.", EXIT_USAGE)
    registry = _registry()

    def work():
        version = registry.register(head, model_dir)
        if alias:
            registry.set_alias(head, alias, version.version)
        return version

    version = _registry_errors(work)
    click.echo(f"registered {model_dir} as {version.uri} (artifact {version.tags.get('artifact_version')}) in "
               f"{registry.uri}" + (f"; alias {alias} -> {version.version}" if alias else ""))
    click.echo(f"next: tagger promote --head {head} --version {version.version}")


def _model_name(cfg, head: str) -> str:
    """The registered model behind config head `head`: the name in its models:/ path, else the head's name.
    Exit 2 for a head the config does not have."""
    from tagger.lifecycle.uris import is_registry_uri, parse_model_uri

    conf = next((h for h in cfg.heads if h.name == head), None)
    if conf is None:
        _fail(f"--head {head}: not a head of {cfg.source} (heads: {', '.join(h.name for h in cfg.heads)}).",
              EXIT_USAGE)
    return parse_model_uri(conf.path).name if is_registry_uri(conf.path) else head


def _who_when() -> dict:
    import getpass
    from datetime import datetime, timezone

    return {"by": getpass.getuser(), "at": datetime.now(timezone.utc).isoformat(timespec="seconds")}


@click.command("promote", short_help="Move a head's champion alias to a version that passes the golden-set gate.")
@click.option("--head", required=True, help="The config's head (its registered model: the name in its "
                                            "models:/ path, else the head's name).")
@click.option("--version", "version", required=True, type=click.IntRange(min=1), help="The candidate version.")
@click.option("--force", is_flag=True, help="Move the alias even if the gate refuses; needs --reason. Who, "
                                            "when and why are recorded as tags on the version.")
@click.option("--reason", default=None, help="Why the gate is overridden (with --force).")
@click.pass_context
def promote_command(ctx, head, version, force, reason):
    """Score version --version of the head on the golden set (publish.audits.golden_set: the same set,
    floor and rule as the daily audit) with the whole cascade, next to the current champion, and move
    the `champion` alias to it only if every enabled label's precision reaches min_precision and its
    macro-F1 is not lower than the champion's by more than max_f1_drop. Prints the per-label table.
    Refused: the alias stays where it was, exit 6; `--force --reason "..."` moves it anyway and
    records who, when and why on the version. Rolling back: `tagger rollback-model --head HEAD`.

    \b
    Example:
      tagger promote --head p0 --version 3
      tagger promote --head p0 --version 3 --force --reason "new 谍照 labels: golden set not relabelled yet"
    """
    from tagger.cli.common import EXIT_REFUSED, load_job_config

    if force and not (reason or "").strip():
        _fail("--force needs --reason \"...\": the registry records why the gate was overridden.", EXIT_USAGE)
    if reason and not force:
        _fail("--reason goes with --force (a promotion that passes the gate needs no reason).", EXIT_USAGE)
    cfg = load_job_config(ctx)
    name = _model_name(cfg, head)
    registry = _registry()
    from tagger.lifecycle.registry import CHAMPION

    candidate = _registry_errors(lambda: registry.get(name, version))
    champion = registry.by_alias(name, CHAMPION)
    if champion is not None and champion.version == version:
        click.echo(f"{candidate.uri} is already the champion of {name}: nothing to do.")
        return

    def score():
        from tagger.lifecycle.gate import evaluate_promotion

        candidate_dir = str(registry.download(candidate))
        champion_dir = str(registry.download(champion)) if champion else None
        return evaluate_promotion(cfg, head, candidate_dir, champion_dir)

    from tagger.lifecycle.gate import format_gate

    try:
        result = _registry_errors(score)
    except OSError as exc:
        _fail(f"cannot score the golden set: {exc}")
    champion_name = f"champion v{champion.version}" if champion else "no champion"
    click.echo(f"{name}: candidate v{version} against {champion_name} on the golden set "
               f"{result.settings['path']}")
    click.echo(format_gate(result, champion_name.replace("no champion", "champion"), f"v{version}"))
    stamp = _who_when()
    tags = {"promoted_by": stamp["by"], "promoted_at": stamp["at"],
            "promoted_from": champion.version if champion else "",
            "gate": "passed" if result.passed else "refused: " + "; ".join(result.reasons)}
    if not result.passed and not force:
        click.echo(f"refused: the champion alias of {name} stays at "
                   f"{'v' + str(champion.version) if champion else '(none)'}. Fix the candidate, or override "
                   f"with --force --reason \"...\" (recorded).")
        sys.exit(EXIT_REFUSED)
    if not result.passed:
        tags.update(forced_by=stamp["by"], forced_at=stamp["at"], forced_reason=reason.strip())
    registry.set_tags(name, version, tags)
    registry.set_alias(name, CHAMPION, version)
    forced = " (FORCED past the gate; recorded with the reason)" if not result.passed else ""
    click.echo(f"promoted: {name}@{CHAMPION} -> v{version}{forced}"
               + (f"; was v{champion.version} (roll back: tagger rollback-model --head {head})" if champion else ""))


@click.command("rollback-model", short_help="Move a head's champion alias back to the version before it.")
@click.option("--head", required=True, help="The config's head.")
@click.option("--to", "to_version", type=click.IntRange(min=1), default=None,
              help="The version to point champion at (default: the one the current champion was promoted from).")
@click.option("--reason", required=True, help="Why (recorded on the version).")
@click.pass_context
def rollback_model_command(ctx, head, to_version, reason):
    """Point the head's `champion` alias back at an earlier version, without the gate (the version was
    champion before, or you name it): the emergency way back. The next job run that resolves
    models:/<name>@champion uses it. Who, when and why are recorded as tags on that version.

    \b
    Example:
      tagger rollback-model --head p0 --reason "p0 v4 tags every 谍照 item as 新车上市"
    """
    from tagger.cli.common import load_job_config
    from tagger.lifecycle.registry import CHAMPION

    cfg = load_job_config(ctx)
    name = _model_name(cfg, head)
    registry = _registry()
    champion = registry.by_alias(name, CHAMPION)
    if to_version is None:
        if champion is None or not champion.tags.get("promoted_from"):
            _fail(f"{name} has {'no champion' if champion is None else f'champion v{champion.version} with no earlier champion recorded'}: "
                  "name the version with --to V.", EXIT_USAGE)
        to_version = int(champion.tags["promoted_from"])
    target = _registry_errors(lambda: registry.get(name, to_version))
    stamp = _who_when()
    registry.set_tags(name, target.version, {"rolled_back_by": stamp["by"], "rolled_back_at": stamp["at"],
                                             "rolled_back_from": champion.version if champion else "",
                                             "rolled_back_reason": reason})
    registry.set_alias(name, CHAMPION, target.version)
    click.echo(f"rolled back: {name}@{CHAMPION} -> v{target.version}"
               + (f" (was v{champion.version})" if champion else ""))


@click.command("shadow", short_help="Score a day with the published head and a candidate side by side; "
                                      "write only the shadow tables.")
@click.option("--date", "run_date", required=True, type=DATE, help="The day to score (yyyy-MM-dd), as the job reads it.")
@click.option("--head", required=True, help="The config's head the candidate would replace (p0, p1, gate).")
@click.option("--candidate", required=True,
              help="The candidate: a head artifact directory, or models:/<name>@<alias> / models:/<name>/<version>.")
@click.option("--top", type=click.IntRange(min=0), default=5, show_default=True,
              help="Per tag, how many items with the largest score disagreement to print and store.")
@click.pass_context
def shadow_command(ctx, run_date, head, candidate, top):
    """Read --date as the job does and tag every item twice in one Spark pass: with the config's
    cascade (the published head, the champion) and with --candidate in --head's place. Writes the
    candidate's rows to tables.shadow (default tagging.item_tags_shadow) and the per-tag comparison to
    tables.shadow_stats, partition (dt, head), replacing an earlier shadow run of the same date and
    head; the published table, quarantine, versions and metrics are not touched and no run lock is
    taken. Prints per tag both rates and their agreement (items tagged by both / by either), then the
    --top items per tag with the largest score difference. A gated head's candidate runs on the rows
    the gate passed; a gate candidate re-runs the heads below it, and their tags are compared too.
    Cost: less than a job run of the date (one read, the models twice; 33 s against 53 s on the demo's
    4,000-item day).

    \b
    Example:
      tagger register --head p0 --model models/p0_new --alias challenger
      tagger shadow --date 2024-01-05 --head p0 --candidate models:/p0@challenger
    """
    from tagger.cli.common import guarded, load_job_config, session

    cfg = load_job_config(ctx)
    from tagger.lifecycle.shadow import check_candidate, compared_heads, format_shadow, run_shadow

    from tagger.config import ConfigError

    try:  # bad options: one line and exit 2, before Spark starts
        compared_heads(cfg, head)
        check_candidate(candidate)
    except ConfigError as exc:
        _fail(exc, EXIT_USAGE)
    from tagger.lifecycle.uris import is_registry_uri

    if is_registry_uri(candidate) or any(is_registry_uri(h.path) for h in cfg.heads):
        _registry()  # mlflow missing or the store unreachable: one line and exit 3, before Spark starts
    spark = session(cfg, "tagger-shadow")
    result = guarded(lambda: run_shadow(spark, cfg, run_date, head, candidate, top, log=click.echo))
    click.echo(format_shadow(result))
    next_step = (f"tagger promote --head {head} --version V" if is_registry_uri(candidate) else
                 f"tagger register --head {head} --model {candidate}, then tagger promote --head {head} --version V")
    click.echo(f"stored: {cfg.tables.shadow} and {cfg.tables.shadow_stats}, dt='{run_date}' AND head='{head}' "
               f"({result.seconds:.0f}s). Next, if it holds up: {next_step}")


@click.command("triage", short_help="Suspected label errors in a labelled file (k-fold scores + cleanlab).")
@click.option("--data", required=True, type=click.Path(dir_okay=False),
              help="The labelled file (JSON lines {\"itemid\"?, \"text\", \"labels\"} or PaddleNLP text<TAB>a,b).")
@click.option("--arch", type=click.Choice(["textcnn", "bert", "linear"]), default="textcnn", show_default=True,
              help="The head trained on each fold (as `tagger train --arch`).")
@click.option("--folds", type=click.IntRange(min=2), default=5, show_default=True,
              help="k of the k-fold training: every item is scored by a head that never saw it.")
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="JSON lines of the suspected items, most suspect first.")
@click.option("--min-positives", type=click.IntRange(min=1), default=20, show_default=True,
              help="Labels with fewer positives are reported apart, with a warning (the method is weak there).")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Epochs per fold (default: the arch's).")
@click.option("--max-length", type=click.IntRange(min=1), default=None, help="Characters/tokens read per text.")
@click.option("--seed", type=int, default=0, show_default=True, help="Same data and seed, same folds and list.")
def triage_command(data, arch, folds, out, min_positives, epochs, max_length, seed):
    """Find items whose labels look wrong. Each of --folds heads is trained (tagger train's own code)
    on the other folds and scores the items of its fold; cleanlab's multi-label label-issue finder
    (confident learning) then flags and ranks items whose given labels disagree with those
    out-of-fold scores. Writes --out: one JSON line per suspected item, most suspect first, with its
    itemid, text, given labels, suspected missing and extra labels, label quality (low = suspect)
    and scores. Prints a per-label summary; labels with fewer than --min-positives positives are
    listed apart with a warning. Costs --folds trainings (textcnn: ~1-1.5 min per epoch per 60k
    texts on 2 cores). Needs the `lifecycle` extra (cleanlab).

    \b
    Example:
      tagger triage --data labelled.jsonl --arch textcnn --folds 5 --out issues.jsonl
    """
    from tagger.models.data import DataError, read_examples, resolve_labels

    import importlib.util

    if importlib.util.find_spec("cleanlab") is None:
        _fail(f"triage needs cleanlab, which is not installed. Fix: {_EXTRA}.")
    try:
        examples = read_examples(data)
        labels = resolve_labels(examples)
    except DataError as exc:
        _fail(exc, EXIT_USAGE)
    if folds > len(examples):
        _fail(f"--folds {folds} is more than the {len(examples)} items of {data}.", EXIT_USAGE)
    from tagger.lifecycle.triage import format_summary, triage

    options = {k: v for k, v in {"epochs": epochs, "max_length": max_length}.items() if v is not None}
    try:
        result = triage(examples.texts, examples.labels, labels, itemids=examples.itemids, arch=arch, folds=folds,
                        seed=seed, min_positives=min_positives, log=click.echo, **options)
    except (DataError, ValueError) as exc:
        _fail(exc, EXIT_USAGE)
    _write_jsonl(out, result.issues)
    click.echo(format_summary(result, len(examples), min_positives))
    click.echo(f"wrote {out}: {len(result.issues):,} suspected items, most suspect first")


def _write_jsonl(path: str, rows: list[dict]) -> None:
    """Rows as JSON lines (UTF-8, not ASCII-escaped); exit 2 naming the path when it cannot be written."""
    import json
    from pathlib import Path

    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    except OSError as exc:
        _fail(f"cannot write {path} ({exc.strerror}). Fix: pass a writable --out path.", EXIT_USAGE)


@click.command("sample", short_help="Items for annotators: nearest each label's threshold, top scores of rare labels.")
@click.option("--model", "model_dir", required=True, type=click.Path(file_okay=False),
              help="The head artifact directory whose uncertainty decides.")
@click.option("--data", required=True, type=click.Path(dir_okay=False),
              help="Unlabelled items, JSON lines {\"itemid\", \"text\"}.")
@click.option("--per-label", type=click.IntRange(min=1), default=20, show_default=True,
              help="Items per enabled label nearest its threshold (and, for a rare label, as many top scores).")
@click.option("--rare-share", type=click.FloatRange(0, 1), default=0.01, show_default=True,
              help="A label that fewer than this share of the items reach is rare: its top scores are added.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="JSON lines to hand to annotators.")
def sample_command(model_dir, data, per_label, rare_share, out):
    """Pick the unlabelled items an annotator's hour is best spent on: for each enabled label of the
    head, the --per-label items whose score is nearest the label's threshold (the model is least sure),
    plus, for rare labels (fewer than --rare-share of the items reach the threshold), the --per-label
    highest-scoring items. Deduplicated: an item picked for several labels is one line listing every
    reason. Writes --out as JSON lines {itemid, text, picked_for: [{label, why, score, threshold}],
    scores}. Seconds per 10k items on CPU for a TextCNN.

    \b
    Example:
      tagger sample --model .tagger/models/p1 --data unlabeled.jsonl --per-label 20 --out to_label.jsonl
    """
    from tagger.lifecycle.sampling import read_unlabelled, sample
    from tagger.models.data import DataError

    try:
        texts, itemids = read_unlabelled(data)
    except DataError as exc:
        _fail(exc, EXIT_USAGE)
    rows, counts = _registry_errors(lambda: sample(model_dir, texts, itemids, per_label, rare_share))
    _write_jsonl(out, rows)
    for label, c in counts.items():
        if not c["enabled"]:
            click.echo(f"  {label}: switched off in the artifact, skipped")
            continue
        extra = (f", {c['top_score']} more from its top scores (rare label; top scores already near the threshold "
                 f"are counted there)" if c["rare"] else "")
        click.echo(f"  {label}: {c['near_threshold']} near the threshold{extra}")
    click.echo(f"wrote {out}: {len(rows):,} items from {len(texts):,} (deduplicated)")
