"""The tag stage on the driver: resolve tag ids, check the rules and heads against the tag
dimension, build the workers' spec, and run the Arrow-batched tagging pass (tagger.udfs.tagging)
over the normalized items."""
from __future__ import annotations

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from tagger.config import Config, ConfigError
from tagger.ops.failpoints import failpoint
from tagger.rules_file import load_rules
from tagger.udfs.tagging import OUTPUT_SCHEMA, LoadCounter, TaggerSpec, tag_partitions


def load_tag_index(tag_dim: DataFrame) -> dict[str, tuple[int, str]]:
    """Active content tags, from extract_tag_dim.sql's columns (id, tag_name, tag_path_name):
    tag path name (without leading/trailing '/') -> (id, name). A path listed twice keeps its
    lowest id."""
    index: dict[str, tuple[int, str]] = {}
    for row in tag_dim.orderBy("id").collect():  # extract_tag_dim.sql excludes NULL ids and paths
        index.setdefault(row["tag_path_name"].strip("/"), (int(row["id"]), row["tag_name"]))
    return index


def build_spec(cfg: Config, tag_index: dict[str, tuple[int, str]], tag_dim_table: str,
               torch_threads: int | None) -> tuple[TaggerSpec, str, list[str]]:
    """Read the rules and the artifacts' sidecars; refuse tags the tag dimension lacks.

    A head whose path is a registry URI (models:/p0@champion) is resolved here, once, into a local
    directory (tagger/lifecycle/registry.py; mlflow is imported only then), and the registry
    version it resolved to is appended to its model version ("#models:/p0/3").

    Returns the spec, the model version string ("<head>=<version>@<digest>[#models:/<name>/<n>];...")
    and the labels switched off in artifacts ("head:label (reason)"). Raises ConfigError listing
    every rule tag or enabled label that the tag dimension lacks, naming a tag path that two heads
    both have switched on (an item would carry it twice), or naming an unknown registry model, alias
    or version; ArtifactError for an unreadable artifact.
    """
    from tagger.lifecycle.uris import is_registry_uri
    from tagger.models.spec import ArtifactError, artifact_version, read_spec

    registry_versions: dict[str, str] = {}
    if any(is_registry_uri(h.path) for h in cfg.heads):
        from tagger.lifecycle.registry import resolve_heads

        cfg, registry_versions = resolve_heads(cfg)
    rules = load_rules(cfg.rules_path)
    missing = [f"rule '{r.id}' -> {r.tag}" for r in rules.rules if r.tag not in tag_index]
    versions, disabled = [], []
    emitted: dict[str, str] = {}  # tag path -> the head that emits it
    for i, head in enumerate(cfg.heads):
        try:
            spec = read_spec(head.path)
        except ArtifactError as exc:  # name the key that fixes it, not only the directory
            raise ConfigError(f"{cfg.source}: key 'heads[{i}].path' (head {head.name}): {exc} Fix the path (a "
                              f"relative one resolves against the config file's folder) or train the head: "
                              f"tagger train --head {head.name}.") from None
        # version@digest: a recalibrated artifact (or ensemble member) is a new model version
        registry = f"#{registry_versions[head.name]}" if head.name in registry_versions else ""
        versions.append(f"{head.name}={artifact_version(head.path, spec)}{registry}")
        reasons = spec.extra.get("disabled_reasons") or {}
        for label, on in zip(spec.labels, spec.enabled):
            path = f"{head.parent}/{label}"
            if not on:
                disabled.append(f"{head.name}:{label}" + (f" ({reasons[label]})" if reasons.get(label) else ""))
                continue
            if path in emitted:  # e.g. a rare-label binary head beside the multi-label head it replaces
                raise ConfigError(
                    f"{cfg.source}: label '{label}' is switched on in both head '{emitted[path]}' and head "
                    f"'{head.name}' under {head.parent}: every tagged item would carry {path} twice. Fix: switch it "
                    f"off in one of them (\"enabled\" in its tagger_head.json, or `tagger calibrate`), or remove a head.")
            emitted[path] = head.name
            if path not in tag_index:
                missing.append(f"head '{head.name}' label '{label}' -> {path}")
    if missing:
        raise ConfigError(
            f"These tags are not active content tags (tag_type_name='内容标签', status=1) in {tag_dim_table}: "
            + "; ".join(missing) + f". Fix: add them to the tag dimension, correct the rule in {cfg.rules_path}, "
            f"the head's parent in {cfg.source}, or switch the label off in its artifact's tagger_head.json.")
    spec = TaggerSpec(heads=cfg.heads, gate_head=cfg.gate_head, rules=rules, tag_index=tag_index,
                      batch_size=cfg.tagging.batch_size, torch_threads=torch_threads,
                      fail_after_batches=failpoint("tag_after_batches"), drop_rows=failpoint("tag_drop_rows"),
                      model_version=";".join(versions))
    return spec, spec.model_version, disabled


def tag_items(spark: SparkSession, cfg: Config, items: DataFrame, spec: TaggerSpec, run_id: str,
              carry: tuple[str, ...] = ()) -> tuple[DataFrame, LoadCounter]:
    """Tag the normalized items (columns itemid, dtype, doc_text, and the string columns named in
    `carry`, passed through: a backfill's run_date) in one mapInPandas pass.

    Returns the tagged DataFrame, persisted but not yet computed (OUTPUT_SCHEMA's columns, the
    `carry` columns, model_version, rules_version, run_id), and the accumulators that count model
    loads, Python workers and rows through the models once it has been computed.
    """
    partitions = cfg.tagging.partitions or spark.sparkContext.defaultParallelism
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(cfg.tagging.arrow_max_records_per_batch))
    loads = LoadCounter(spark.sparkContext)
    # Sorted inside each partition: shuffle order is not fixed, and it decides which rows share a
    # batch (and its padding), so without it a rerun could differ in the last bits of a score.
    schema = OUTPUT_SCHEMA + "".join(f", {column} string" for column in carry)
    tagged = (items.select("itemid", "dtype", "doc_text", *carry).repartition(partitions, "itemid")
              .sortWithinPartitions("itemid", *carry)
              .mapInPandas(tag_partitions(spec, loads, carry), schema)
              .withColumn("model_version", F.lit(spec.model_version))
              .withColumn("rules_version", F.lit(spec.rules.version))
              .withColumn("run_id", F.lit(run_id))
              .persist(StorageLevel.MEMORY_AND_DISK))
    return tagged, loads
