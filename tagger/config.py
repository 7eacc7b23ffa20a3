"""Job configuration: YAML files read once at start and validated.

Every error names the file and the key, and says how to fix it, so that a bad config stops the
job before any Spark work starts.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import date
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml

def _shipped_conf_dir() -> Path:
    """The shipped conf folder as a directory on local disk: the package's own folder when installed
    or checked out, or, when the package is imported from a zip (spark-submit --py-files, the driver
    of cluster deploy mode), a copy of its files extracted once to the temporary directory under a
    name that carries their digest (so the rules file and the default config are real files that
    paths in a config can point at). Raises nothing but OSError from the disk."""
    import hashlib
    import tempfile

    shipped = files("tagger.conf")
    if Path(str(shipped)).is_dir():
        return Path(str(shipped))
    contents = {entry.name: entry.read_bytes() for entry in shipped.iterdir() if entry.is_file()}
    digest = hashlib.sha256(b"".join(name.encode() + data for name, data in sorted(contents.items()))).hexdigest()
    target = Path(tempfile.gettempdir()) / f"tagger-conf-{digest[:12]}"
    if not target.is_dir():
        staging = Path(tempfile.mkdtemp(prefix="tagger-conf-", dir=target.parent))
        for name, data in contents.items():
            (staging / name).write_bytes(data)
        try:
            os.replace(staging, target)
        except OSError:  # another process extracted the same files first
            pass
    return target


# The shipped configuration is package data (conf/ in the repository, tagger/conf once installed).
CONF_DIR = _shipped_conf_dir()
DEFAULT_CONFIG = CONF_DIR / "tagger.yaml"

# db.table, each part a SQL identifier: names are also bound with IDENTIFIER(:name), this check
# makes a typo or an injection attempt fail with a readable message before Spark starts.
TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*$")
HEAD_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


class ConfigError(ValueError):
    """A configuration file is missing, unreadable or holds an invalid value."""


def tagger_home() -> Path:
    """$TAGGER_HOME (default ./.tagger) as an absolute path; it need not exist."""
    return Path(os.environ.get("TAGGER_HOME", "./.tagger")).resolve()


@dataclass(frozen=True)
class Tables:
    """The `tables:` section: each a `db.table` name. Read: pool, asr, ocr (video speech and screen
    text), tag_dim (the tag dimension); written: output, quarantine, metrics; truth is demo only
    (true labels, read by `tagger train`)."""
    pool: str
    asr: str
    ocr: str
    tag_dim: str
    output: str
    quarantine: str
    metrics: str
    truth: str
    # write-audit-publish (tagger/job/publish.py); default: the output table's name + a suffix
    versions: str = ""
    publish_log: str = ""
    daily_stats: str = ""
    # `tagger shadow` (tagger/lifecycle/shadow.py): the candidate's rows and the per-tag comparison
    shadow: str = ""
    shadow_stats: str = ""


@dataclass(frozen=True)
class HeadConf:
    """One entry of `heads:`. name: lower-case id (at most 32 characters); path: the head's artifact
    directory (${TAGGER_HOME} and ${CONF_DIR} expanded); parent: the tag path its labels go under
    (no leading/trailing "/"); gate_by: an earlier head whose first label must pass, or None;
    train: the `train:` section (used by `tagger train` only), or None."""
    name: str
    path: str
    parent: str
    gate_by: str | None = None
    train: "TrainConf | None" = None


def check_date(value) -> str:
    """`value` as yyyy-MM-dd if it is a real date written that way; else ValueError with an example."""
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", str(value)):
        try:
            return date.fromisoformat(value).isoformat()
        except ValueError:
            pass
    raise ValueError(f"'{value}' is not a date of the form yyyy-MM-dd (e.g. 2024-01-05)")


def head_labels(head: HeadConf, tag_paths) -> list[str]:
    """A head's labels in output order: its `train.labels`, or else the active children of its
    parent among `tag_paths` (tag path names of the tag dimension), in their order there.
    Raises ConfigError when the parent has no active children."""
    if head.train is not None and head.train.labels is not None:
        return list(head.train.labels)
    prefix = head.parent + "/"
    children = [p[len(prefix):] for p in tag_paths if p.startswith(prefix) and "/" not in p[len(prefix):]]
    if not children:
        raise ConfigError(f"head '{head.name}': train.labels is 'children' but {head.parent} has no active "
                          f"children in the tag dimension.")
    return children


@dataclass(frozen=True)
class TrainConf:
    """A head's `train:` section as validated by load_config (see the field comments); read by
    `tagger train` only, never by the daily job."""
    arch: str  # textcnn | bert | linear | knn | ensemble
    labels: tuple[str, ...] | None  # None: the active children of the head's parent
    options: dict[str, Any] = field(default_factory=dict)  # epochs, max_length, lr, ...; dictionary: its entries
    precision: float | None = None  # calibrate thresholds on dev to this precision after training
    min_dev_positives: int = 5  # fewer dev positives than this: the label is switched off
    confidence: float = 0.95  # the dev precision's lower bound at this confidence must reach `precision`
    objective: str = "recall"  # recall: lowest qualifying threshold; f1: best dev F1 among them
    combine: str | None = None  # ensemble only: intersection | union | mean
    members: tuple["TrainConf", ...] = ()  # ensemble only: one entry per member model


AUDIT_LEVELS = ("fail", "warn")


@dataclass(frozen=True)
class AuditConf:
    """One audit of the `publish.audits` section: its level ('fail' refuses the publish, 'warn'
    publishes and reports) and its numeric settings (see conf/tagger.yaml and docs/publishing.md)."""
    name: str
    level: str
    settings: dict[str, Any]


@dataclass(frozen=True)
class PublishConf:
    """The `publish:` section. keep_versions: staged versions kept on disk per date (the published
    one is always kept); history_days: how many trailing published days the audits compare with;
    min_history_days: with fewer, the history audits pass with a note; audits: by name."""
    keep_versions: int
    history_days: int
    min_history_days: int
    audits: dict[str, AuditConf]


# name -> (default level, default settings); the keys a config may set for each audit
AUDIT_DEFAULTS: dict[str, tuple[str, dict[str, Any]]] = {
    "volume": ("fail", {"min_ratio": 0.6, "max_ratio": 2.0}),
    "coverage": ("fail", {"sigmas": 4.0, "min_band": 0.08}),
    "tag_drift": ("fail", {"psi_warn": 0.10, "psi_fail": 0.25, "p_value": 1e-6, "min_change": 0.5}),
    "quarantine": ("fail", {"max_share": 0.05}),
    # max_f1_drop: the promote gate (tagger promote) refuses a candidate whose golden-set macro-F1 over the
    # head's labels is lower than the champion's by more than this (absolute); the daily audit ignores it
    "golden_set": ("fail", {"path": "", "min_precision": 0.60, "min_predicted": 5, "max_f1_drop": 0.02}),
}


@dataclass(frozen=True)
class TextConf:
    """The `text:` section. max_chars: budget per doc_text part (title, summary, ocr, asr), in
    characters; speech_text_fields: the field(s) holding the text in an ASR/OCR JSON array of objects;
    payload_paths: per source ('asr', 'ocr'), the JMESPath expressions tried in order to read a
    payload's text (None: tagger.job.payloads.default_paths(speech_text_fields))."""
    max_chars: dict[str, int]
    speech_text_fields: tuple[str, ...]
    payload_paths: dict[str, tuple[str, ...]] | None = None

    def paths(self, source: str) -> tuple[str, ...] | None:
        """The expressions for 'asr' or 'ocr', or None for the defaults."""
        return None if self.payload_paths is None else self.payload_paths[source]


@dataclass(frozen=True)
class TaggingConf:
    """The `tagging:` section. batch_size: texts per forward pass; arrow_max_records_per_batch: rows per
    Arrow batch handed to the UDF; partitions / torch_threads: None means 'auto'
    (spark.default.parallelism / spark.task.cpus)."""
    batch_size: int
    arrow_max_records_per_batch: int
    partitions: int | None  # None: spark.default.parallelism
    torch_threads: int | None  # None: spark.task.cpus


# How to fix a rules path, in every "file not found" about it.
RULES_FIX = ("Fix the `rules:` key of the job config: a relative path resolves against the config file's folder "
             "({conf_dir}); ${{TAGGER_CONF}}/autoshow_rules.yaml is the shipped rules file.")
CATALOGS = ("embedded", "database", "external")
METASTORE_PASSWORD_ENV = "TAGGER_METASTORE_PASSWORD"


@dataclass(frozen=True)
class MetastoreDb:
    """The `spark.metastore_db:` section (catalog 'database'): a Hive metastore kept in a database
    that every process shares (docs/cluster.md). url: JDBC URL; user; password_env: the environment
    variable holding the password / password_file: a file holding it (the password itself never goes
    into the YAML); driver_class and driver_jar: the JDBC driver (the jar must reach the driver JVM's
    class path); warehouse: spark.sql.warehouse.dir (a path or URI every executor can write)."""
    url: str
    user: str
    password_env: str
    password_file: str
    driver_class: str
    driver_jar: str
    warehouse: str

    def password(self) -> str:
        """The password from password_file when set, else from $password_env. Raises ConfigError
        when the file cannot be read or the variable is unset or empty."""
        if self.password_file:
            try:
                return Path(self.password_file).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(f"spark.metastore_db.password_file: cannot read {self.password_file} "
                                  f"({exc.strerror}). Point the key at a file holding the password.") from None
        value = os.environ.get(self.password_env, "")
        if not value:
            raise ConfigError(f"the metastore password is not set: export {self.password_env} "
                              f"(spark.metastore_db.password_env) or set spark.metastore_db.password_file.")
        return value


@dataclass(frozen=True)
class SparkConf:
    """The `spark:` section. catalog: 'embedded' (local Derby metastore under $TAGGER_HOME),
    'database' (a Hive metastore in a shared database, see `metastore_db`) or 'external' (the
    cluster's metastore service, set in conf); master: e.g. local[2]; conf: extra Spark settings, as
    strings; metastore_db: the database's settings (catalog 'database' only, else None)."""
    catalog: str
    master: str
    conf: dict[str, str]
    metastore_db: MetastoreDb | None = None


@dataclass(frozen=True)
class Config:
    """The whole validated job config (built by load_config). source: the YAML file's path;
    speech_lookback_days / speech_late_days: the ASR/OCR partition window around a run date, in days;
    rules_path: the rules YAML; gate_head: the name of one of `heads`; lock_dir and
    lock_stale_after_hours (hours): the run lock; raw: the parsed YAML mapping as read."""
    source: str
    tables: Tables
    speech_lookback_days: int
    speech_late_days: int
    text: TextConf
    rules_path: str
    gate_head: str
    heads: tuple[HeadConf, ...]
    tagging: TaggingConf
    lock_dir: str
    lock_stale_after_hours: float
    spark: SparkConf
    publish: PublishConf = None  # type: ignore[assignment]  (always set by load_config)
    raw: dict[str, Any] = field(repr=False, default_factory=dict)


class _Reader:
    """Typed access to a YAML mapping that reports `file: key: problem. fix` on error."""

    def __init__(self, source: str, data: Any, prefix: str = ""):
        self.source, self.data, self.prefix = source, data, prefix
        if not isinstance(data, dict):
            self.fail("", f"expected a mapping, got {type(data).__name__}")

    def fail(self, key: str, problem: str, fix: str = "") -> None:
        where = f"{self.prefix}{key}" or "(top level)"
        raise ConfigError(f"{self.source}: key '{where}': {problem}." + (f" {fix}" if fix else ""))

    def get(self, key: str, kind: type | tuple, default: Any = ...) -> Any:
        if key not in self.data:
            if default is ...:
                self.fail(key, "is missing", "Add it (see conf/tagger.yaml for an example).")
            return default
        value = self.data[key]
        if kind is int and isinstance(value, bool) or not isinstance(value, kind):
            names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            self.fail(key, f"expected {names}, got {value!r}")
        return value

    def section(self, key: str) -> "_Reader":
        return _Reader(self.source, self.get(key, dict), f"{self.prefix}{key}.")

    def positive_int(self, key: str, default: Any = ...) -> int:
        value = self.get(key, int, default)
        if value < 1:
            self.fail(key, f"must be >= 1, got {value}")
        return value

    def non_negative_int(self, key: str) -> int:
        value = self.get(key, int)
        if value < 0:
            self.fail(key, f"must be >= 0, got {value}")
        return value

    def auto_or_int(self, key: str) -> int | None:
        value = self.get(key, (int, str), "auto")
        if value == "auto":
            return None
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            self.fail(key, f"must be 'auto' or an integer >= 1, got {value!r}")
        return value


TRAIN_OPTIONS = {"epochs": int, "max_length": int, "lr": float, "batch_size": int, "size": str, "pos_weight": str,
                 "patience": int, "seed": int,
                 # train on at most this many examples: a stratified draw that keeps rare labels' positives
                 # (models/training.py cap_examples); the demo's heads learn keyword data from far fewer
                 "max_examples": int,
                 # torch intra-op threads while training (default: models/training.py training_threads)
                 "threads": int,
                 # textcnn and linear: char | word | char+word, and the team dictionary file (a path, relative
                 # to the config's folder; read here, so a bad file stops `tagger train` at start)
                 "tokenizer": str, "dictionary": str,
                 # knn only (models/knn.py): the encoder directory (an HF encoder checkpoint or a textcnn/bert
                 # head; relative to the config's folder) and the neighbours per item. No training: the
                 # examples become the bank
                 "encoder": str, "k": int,
                 # textcnn only: a word2vec text file initialising its embedding table (`tagger train
                 # --embeddings`; relative to the config's folder; its header is checked here)
                 "embeddings": str,
                 # linear only: LogisticRegression's C, the vocabulary's min_df and max_features
                 "c": float, "min_df": int, "max_features": int}
TRAIN_ARCHS = ("textcnn", "bert", "linear")
KNN_OPTIONS = ("encoder", "k", "max_length", "batch_size", "max_examples", "seed", "threads")  # what arch: knn takes


HEAD_TRAIN_KEYS = ("arch", "labels", "precision", "confidence", "objective", "min_dev_positives", "combine",
                   "members")
COMBINE = ("intersection", "union", "mean")


def _options(t: _Reader, skip: tuple[str, ...], conf_dir: Path, arch: str) -> dict[str, Any]:
    from tagger.models.words import TOKENIZERS, read_dictionary

    options = {}
    for key in t.data:
        if key in skip:
            continue
        if key not in TRAIN_OPTIONS:
            t.fail(key, f"unknown training option; known: {', '.join(skip)}, {', '.join(TRAIN_OPTIONS)}")
        options[key] = t.get(key, (int, float) if TRAIN_OPTIONS[key] is float else TRAIN_OPTIONS[key])
    for key in ("max_examples", "threads", "epochs", "batch_size", "max_length", "k"):
        if key in options and options[key] < 1:
            t.fail(key, f"must be >= 1, got {options[key]}")
    # an ensemble's own options go to every member: each arch takes the ones that apply to it
    wrong = {"linear": ("epochs", "lr", "patience", "batch_size", "size"),
             "textcnn": ("c", "min_df", "max_features"), "bert": ("c", "min_df", "max_features")}
    if arch == "knn":
        wrong["knn"] = tuple(k for k in TRAIN_OPTIONS if k not in KNN_OPTIONS)
        if "encoder" not in options:
            t.fail("encoder", "is required for arch: knn (the encoder whose embeddings the bank holds)",
                   "Point it at a Hugging Face encoder checkpoint or a textcnn/bert head directory, e.g. "
                   "encoder: ${TAGGER_HOME}/models/gate.")
        options["encoder"] = str(Path(conf_dir) / expand(options["encoder"], conf_dir))
    else:
        for key in ("encoder", "k"):
            if key in options:
                t.fail(key, f"is only for arch: knn, not {arch}", "Remove it.")
    for key in wrong.get(arch, ()):
        if key in options:
            t.fail(key, f"does not apply to arch: {arch}",
                   "Remove it (linear takes c / min_df / max_features; textcnn and bert take epochs / lr / ...; "
                   f"knn takes {' / '.join(KNN_OPTIONS)}).")
    if "pos_weight" in options and options["pos_weight"] not in ("auto", "none"):
        t.fail("pos_weight", f"must be 'auto' or 'none', got {options['pos_weight']!r}",
               "auto: each label's positives weigh negatives/positives (rare labels); none: every example weighs 1.")
    if "tokenizer" in options:
        if options["tokenizer"] not in TOKENIZERS:
            t.fail("tokenizer", f"must be one of {', '.join(TOKENIZERS)}, got {options['tokenizer']!r}")
        if arch == "bert":
            t.fail("tokenizer", "is for arch textcnn and linear (a bert head has its own WordPiece tokenizer)")
    if "dictionary" in options:
        path = Path(conf_dir) / expand(options["dictionary"], conf_dir)  # relative: to the config's folder
        if options.get("tokenizer", "char") == "char" and arch != "ensemble":
            t.fail("dictionary", "is read only by a head that reads words", "Add tokenizer: word or char+word.")
        try:
            options["dictionary"] = read_dictionary(path)
        except (OSError, ValueError) as e:
            t.fail("dictionary", f"cannot read the team dictionary {path} ({e})",
                   "Point it at a UTF-8 file with one car series or brand name per line.")
    if "embeddings" in options:
        options["embeddings"] = _embeddings_file(t, options["embeddings"], conf_dir, arch)
    return options


def _embeddings_file(t: _Reader, value: str, conf_dir: Path, arch: str) -> str:
    """The `embeddings:` option as an absolute path, after checking that it is for a textcnn and that
    the file's word2vec header fits the TextCNN's embedding width. Raises ConfigError naming the key."""
    if arch != "textcnn":
        t.fail("embeddings", f"initialises a textcnn's embedding table; arch: {arch} has none",
               "Put it on the textcnn member of an ensemble, or remove it." if arch == "ensemble" else "Remove it.")
    from tagger.models.embeddings import EmbeddingsError, word2vec_header
    from tagger.models.textcnn import DEFAULT_HPARAMS

    path = expand(value, conf_dir)  # relative: to the config's folder
    try:
        _, dim = word2vec_header(path)
    except EmbeddingsError as e:
        t.fail("embeddings", f"cannot use the vectors file ({e})",
               "Point it at a word2vec text file, e.g. one written by `tagger embeddings`.")
    if dim != DEFAULT_HPARAMS["embed_dim"]:
        t.fail("embeddings", f"{path} holds {dim}-dimensional vectors; the TextCNN's embedding has "
               f"{DEFAULT_HPARAMS['embed_dim']}", f"Write vectors of that size (tagger embeddings --dim "
               f"{DEFAULT_HPARAMS['embed_dim']}).")
    return path


def _train_conf(t: _Reader, conf_dir: Path) -> TrainConf:
    arch = t.get("arch", str)
    if arch not in TRAIN_ARCHS + ("ensemble", "knn"):
        t.fail("arch", f"must be 'textcnn', 'bert', 'linear', 'knn' or 'ensemble', got {arch!r}")
    labels = t.get("labels", (list, str))
    if labels == "children":
        labels = None
    elif not isinstance(labels, list) or not labels or not all(isinstance(x, str) and x for x in labels):
        t.fail("labels", "must be 'children' or a non-empty list of tag names")
    precision = t.get("precision", (int, float), None)
    if precision is not None and (isinstance(precision, bool) or not 0 < precision <= 1):
        t.fail("precision", f"must be in (0, 1], got {precision}", "The business target is 0.80.")
    min_pos = t.positive_int("min_dev_positives", 5)
    confidence = t.get("confidence", (int, float), 0.95)
    if isinstance(confidence, bool) or not 0.5 <= confidence < 1:
        t.fail("confidence", f"must be in [0.5, 1), got {confidence}", "0.5 uses the dev precision itself.")
    if precision is not None and precision >= 1 and confidence > 0.5:
        t.fail("precision", "1.0 can never be reached with a confidence margin (the lower bound of a precision "
               "is below 1)", "Use a target below 1, or confidence: 0.5.")
    objective = t.get("objective", str, "recall")
    if objective not in ("recall", "f1"):
        t.fail("objective", f"must be 'recall' or 'f1', got {objective!r}")
    combine, members = None, ()
    if arch == "ensemble":
        combine = t.get("combine", str)
        if combine not in COMBINE:
            t.fail("combine", f"must be one of {', '.join(COMBINE)}, got {combine!r}")
        items = t.get("members", list)
        if len(items) < 2:
            t.fail("members", "an ensemble needs at least two members, e.g. [{arch: bert}, {arch: textcnn}]")
        members = []
        for i, item in enumerate(items):
            m = _Reader(t.source, item, f"{t.prefix}members[{i}].")
            member_arch = m.get("arch", str)
            if member_arch not in TRAIN_ARCHS:
                m.fail("arch", f"a member must be 'textcnn', 'bert' or 'linear', got {member_arch!r}")
            members.append(TrainConf(arch=member_arch, labels=None,
                                     options=_options(m, ("arch",), conf_dir, member_arch)))
        members = tuple(members)
    else:
        for key in ("combine", "members"):
            if key in t.data:
                t.fail(key, "is only for arch: ensemble")
    return TrainConf(arch=arch, labels=tuple(labels) if labels else None,
                     options=_options(t, HEAD_TRAIN_KEYS, conf_dir, arch), precision=precision, min_dev_positives=min_pos,
                     confidence=float(confidence), objective=objective,
                     combine=combine, members=members)


def _head_path(h: "_Reader", conf_dir: Path) -> str:
    """A head's `path`: a directory made absolute (expand), or a registry URI models:/<name>@<alias> or
    models:/<name>/<version> kept as written (resolved at job start, tagger/lifecycle/registry.py)."""
    from tagger.lifecycle.uris import is_registry_uri, parse_model_uri

    raw = h.get("path", str)
    if not is_registry_uri(raw):
        return os.path.normpath(expand(raw, conf_dir))
    try:
        parse_model_uri(raw)
    except ValueError as exc:
        h.fail("path", str(exc))
    return raw


def _publish_conf(root: "_Reader", conf_dir: Path) -> PublishConf:
    """The `publish:` section with its defaults (the whole section may be left out)."""
    pb = _Reader(root.source, root.data.get("publish") or {}, "publish.")
    audits_raw = _Reader(root.source, pb.data.get("audits") or {}, "publish.audits.")
    unknown = sorted(set(audits_raw.data) - set(AUDIT_DEFAULTS))
    if unknown:
        audits_raw.fail(unknown[0], "is not an audit", f"Use one of {sorted(AUDIT_DEFAULTS)}.")
    audits = {}
    for name, (level, defaults) in AUDIT_DEFAULTS.items():
        a = _Reader(root.source, audits_raw.data.get(name) or {}, f"publish.audits.{name}.")
        extra = sorted(set(a.data) - set(defaults) - {"level"})
        if extra:
            a.fail(extra[0], "is not a setting of this audit", f"Known: level, {', '.join(defaults)}.")
        chosen = a.get("level", str, level)
        if chosen not in AUDIT_LEVELS:
            a.fail("level", f"must be one of {list(AUDIT_LEVELS)}, got {chosen!r}")
        settings = {}
        for key, default in defaults.items():
            if isinstance(default, str):
                value = a.get(key, str, default)
                settings[key] = expand(value, conf_dir) if value else ""
            else:
                value = a.get(key, (int, float), default)
                if isinstance(value, bool) or value < 0:
                    a.fail(key, f"must be a number >= 0, got {value!r}")
                settings[key] = float(value)
        for key in ("min_precision", "max_f1_drop"):
            if key in settings and settings[key] > 1:
                a.fail(key, f"must be a share between 0 and 1, got {settings[key]!r}", "e.g. 0.6 for 60%.")
        audits[name] = AuditConf(name, chosen, settings)
    keep = pb.positive_int("keep_versions", 3)
    history = pb.positive_int("history_days", 14)
    min_history = pb.get("min_history_days", int, 3)
    if min_history < 1:
        pb.fail("min_history_days", f"must be >= 1, got {min_history}")
    return PublishConf(keep_versions=keep, history_days=history, min_history_days=min_history, audits=audits)


def _metastore_db(sp: "_Reader", conf_dir: Path) -> MetastoreDb:
    """The `spark.metastore_db:` section, required with catalog: database. Refuses a `password` key."""
    if "metastore_db" not in sp.data:
        sp.fail("metastore_db", "is required with catalog: database",
                "Add url, user and password_env (docs/cluster.md, 'A shared metastore database').")
    m = sp.section("metastore_db")
    if "password" in m.data:
        m.fail("password", "passwords never go into the config file",
               f"Remove it; export it as ${METASTORE_PASSWORD_ENV} (or name another variable in password_env, "
               f"or a file in password_file).")
    known = {"url", "user", "password_env", "password_file", "driver_class", "driver_jar", "warehouse"}
    extra = sorted(set(m.data) - known)
    if extra:
        m.fail(extra[0], "is not a setting of metastore_db", f"Known: {', '.join(sorted(known))}.")
    url = m.get("url", str)
    if not url.startswith("jdbc:"):
        m.fail("url", f"must be a JDBC URL (jdbc:postgresql://host:port/db), got {url!r}")
    password_file = m.get("password_file", str, "")
    return MetastoreDb(url=url, user=m.get("user", str), password_env=m.get("password_env", str, METASTORE_PASSWORD_ENV),
                       password_file=expand(password_file, conf_dir) if password_file else "",
                       driver_class=m.get("driver_class", str, "org.postgresql.Driver"),
                       driver_jar=expand(m.get("driver_jar", str, "/usr/share/java/postgresql.jar"), conf_dir),
                       warehouse=expand(m.get("warehouse", str, "${TAGGER_HOME}/warehouse"), conf_dir))


def _jmespath_list(section: "_Reader", key: str) -> list[str]:
    """A non-empty list of JMESPath expressions at `key`, each compiled once here so that a typo
    stops the job at start (ConfigError naming the file, the key and the expression)."""
    import jmespath
    from jmespath.exceptions import JMESPathError

    paths = section.get(key, list)
    if not paths or not all(isinstance(p, str) and p.strip() for p in paths):
        section.fail(key, "must be a non-empty list of JMESPath expressions, e.g. ['[*]', '[*].text']")
    for i, path in enumerate(paths):
        try:
            jmespath.compile(path)
        except JMESPathError as exc:
            section.fail(f"{key}[{i}]", f"{path!r} is not a JMESPath expression ({str(exc).splitlines()[0]})",
                         "see https://jmespath.org for the syntax; quote field names with \"...\"")
    return paths


def expand(value: str, conf_dir: Path) -> str:
    """A path from a config file, made absolute: ${TAGGER_HOME} ($TAGGER_HOME, default ./.tagger),
    ${CONF_DIR} (`conf_dir`, the folder of the config file), ${TAGGER_CONF} (the shipped conf folder
    inside the installed package) and other ${ENV_VARS} expanded; a path still relative after that
    resolves against `conf_dir`, never the working directory. URIs (hdfs://..., s3a://...) are
    returned expanded but otherwise unchanged; "" stays "". Raises nothing."""
    env = dict(os.environ, TAGGER_HOME=str(tagger_home()), CONF_DIR=str(conf_dir), TAGGER_CONF=str(CONF_DIR))
    value = re.sub(r"\$\{(\w+)\}", lambda m: env.get(m.group(1), m.group(0)), value)
    if not value or re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", value) or os.path.isabs(value):
        return value
    return str(Path(conf_dir) / value)


def load_yaml(path: Path, option: str = "--config with the path of the job's YAML config") -> Any:
    """The parsed content of the YAML file at `path` (any YAML value; None for an empty file).
    Raises ConfigError if the file does not exist (naming `option`, the command-line option or config
    key that fixes it) or is not valid YAML."""
    if not path.is_file():
        raise ConfigError(f"{path}: file not found. Fix it with {option}.")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None


def load_config(path: str | os.PathLike | None = None) -> Config:
    """Read and validate the job config at `path` (default: the shipped conf/tagger.yaml) into a
    Config; paths in it are expanded relative to the file's folder (${CONF_DIR}). Raises ConfigError,
    naming the file and the key, for a missing or unreadable file, a missing key, a wrong type, or an
    invalid value (table name not db.table, bad head name, duplicate head, unknown gate_by or
    gate_head, bad train section, unknown catalog, ...)."""
    path = Path(path) if path else DEFAULT_CONFIG
    source = str(path)
    root = _Reader(source, load_yaml(path))
    conf_dir = path.resolve().parent

    t = root.section("tables")
    derived = {"versions": "_versions", "publish_log": "_publish_log", "daily_stats": "_daily_stats",
               "shadow": "_shadow", "shadow_stats": "_shadow_stats"}
    names = {k: t.get(k, str) for k in Tables.__dataclass_fields__ if k not in derived}
    names.update({k: t.get(k, str, names["output"] + suffix) for k, suffix in derived.items()})
    for key, name in names.items():
        if not TABLE_NAME.match(name):
            t.fail(key, f"'{name}' is not a table name of the form db.table (letters, digits, _)")
    tables = Tables(**names)

    ex = root.section("extract")
    tx = root.section("text")
    mc = tx.section("max_chars")
    max_chars = {part: mc.positive_int(part) for part in ("title", "summary", "ocr", "asr")}
    fields = tx.get("speech_text_fields", list)
    if not fields or not all(isinstance(f, str) and f for f in fields):
        tx.fail("speech_text_fields", "must be a non-empty list of field names")
    payload_paths = None
    if tx.data.get("payload_paths") is not None:
        pp = tx.section("payload_paths")
        payload_paths = {src: tuple(_jmespath_list(pp, src)) for src in ("asr", "ocr")}

    heads = []
    for i, item in enumerate(root.get("heads", list)):
        h = _Reader(source, item, f"heads[{i}].")
        name = h.get("name", str)
        if not HEAD_NAME.match(name):
            h.fail("name", f"'{name}' must be lower-case letters, digits, _ (at most 32)")
        heads.append(HeadConf(name=name, path=_head_path(h, conf_dir),
                              parent=h.get("parent", str).strip("/"), gate_by=h.get("gate_by", str, None),
                              train=_train_conf(h.section("train"), conf_dir) if "train" in h.data else None))
    known = [h.name for h in heads]
    if not heads:
        root.fail("heads", "must list at least one model head")
    if len(set(known)) != len(known):
        root.fail("heads", f"head names must be unique, got {known}")
    for i, h in enumerate(heads):
        if h.gate_by is not None and h.gate_by not in known[:i]:
            root.fail(f"heads[{i}].gate_by", f"'{h.gate_by}' is not a head listed before '{h.name}'",
                      f"Use one of {known[:i]}.")
    gate_head = root.get("gate_head", str)
    if gate_head not in known:
        root.fail("gate_head", f"'{gate_head}' is not one of the heads {known}")

    lk = root.section("run_lock")
    stale = lk.get("stale_after_hours", (int, float))
    if stale <= 0:
        lk.fail("stale_after_hours", f"must be > 0, got {stale}")
    tg = root.section("tagging")
    sp = root.section("spark")
    catalog = sp.get("catalog", str)
    if catalog not in CATALOGS:
        sp.fail("catalog", f"must be one of {list(CATALOGS)}, got {catalog!r}")
    spark_conf = {str(k): str(v) for k, v in sp.get("conf", dict, {}).items()}
    for key in spark_conf:
        if key.lower().endswith(("password", "connectionpassword")):
            sp.fail(f"conf.{key}", "passwords never go into the config file",
                    f"Use catalog: database with the password in ${METASTORE_PASSWORD_ENV} or a password_file.")
    metastore_db = _metastore_db(sp, conf_dir) if catalog == "database" else None
    if catalog != "database" and "metastore_db" in sp.data:
        sp.fail("metastore_db", f"is only read with catalog: database (catalog is {catalog!r})")

    publish = _publish_conf(root, conf_dir)
    rules_path = expand(root.get("rules", str), conf_dir)
    if not os.path.isfile(rules_path):
        root.fail("rules", f"{rules_path}: file not found", RULES_FIX.format(conf_dir=conf_dir))

    return Config(
        source=source,
        tables=tables,
        speech_lookback_days=ex.non_negative_int("speech_lookback_days"),
        speech_late_days=ex.non_negative_int("speech_late_days"),
        text=TextConf(max_chars=max_chars, speech_text_fields=tuple(fields), payload_paths=payload_paths),
        rules_path=rules_path,
        gate_head=gate_head,
        heads=tuple(heads),
        tagging=TaggingConf(
            batch_size=tg.positive_int("batch_size"),
            arrow_max_records_per_batch=tg.positive_int("arrow_max_records_per_batch"),
            partitions=tg.auto_or_int("partitions"),
            torch_threads=tg.auto_or_int("torch_threads"),
        ),
        lock_dir=expand(lk.get("dir", str), conf_dir),
        lock_stale_after_hours=float(stale),
        spark=SparkConf(catalog=catalog, master=sp.get("master", str), conf=spark_conf, metastore_db=metastore_db),
        publish=publish,
        raw=root.data,
    )
