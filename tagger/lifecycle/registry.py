"""The model registry: MLflow's, embedded by default (a SQLite store and an artifact folder under
$TAGGER_HOME/registry), or the team's server when MLFLOW_TRACKING_URI is set.

A head artifact directory is logged as a run's `model` artifact and registered as a new version of
the registered model named after the head; aliases (`champion`, `challenger`) point at versions. A
job whose head path is `models:/<name>@<alias>` or `models:/<name>/<version>` gets it resolved once
at start (resolve_heads) into a local directory: a cache keyed by name and version under
$TAGGER_REGISTRY_CACHE (default $TAGGER_HOME/registry-cache). A version's files never change in the
registry, so a cached version is never downloaded again.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tagger.config import Config, ConfigError, tagger_home
from tagger.lifecycle.uris import ModelUri, is_registry_uri, parse_model_uri

EXPERIMENT = "tagger-heads"
CHAMPION = "champion"
MODEL_ARTIFACT = "model"


class RegistryError(ConfigError):
    """The registry cannot do what was asked: no such registered model, version or alias, or the
    store cannot be reached. The message says which and how to fix it (exit 3 in the CLI)."""


class UnknownVersionError(RegistryError):
    """A version number or alias that the registered model does not have (exit 2 in the CLI)."""


def registry_uri() -> str:
    """$MLFLOW_TRACKING_URI, or the embedded default sqlite:///$TAGGER_HOME/registry/mlflow.db."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{tagger_home() / 'registry' / 'mlflow.db'}"


def cache_root() -> Path:
    """Where resolved versions are downloaded: $TAGGER_REGISTRY_CACHE or $TAGGER_HOME/registry-cache.
    On a cluster put it on storage every executor reads (docs/lifecycle.md)."""
    return Path(os.environ.get("TAGGER_REGISTRY_CACHE") or tagger_home() / "registry-cache").resolve()


@dataclass(frozen=True)
class Version:
    """One registered version: model name, version number, its artifact source URI, aliases and tags."""
    name: str
    version: int
    source: str
    aliases: tuple[str, ...]
    tags: dict

    @property
    def uri(self) -> str:
        """models:/<name>/<version>."""
        return f"models:/{self.name}/{self.version}"


def _quiet_mlflow() -> None:
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


class Registry:
    """An MlflowClient on registry_uri() (or `uri`). mlflow is imported here, never on the job's path
    unless a head path is models:/... Raises RegistryError when the store cannot be opened."""

    def __init__(self, uri: str | None = None):
        _quiet_mlflow()
        from mlflow.tracking import MlflowClient

        self.uri = uri or registry_uri()
        if self.uri.startswith("sqlite:///"):
            Path(self.uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        try:
            self.client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
        except Exception as exc:  # mlflow raises several kinds for a bad URI
            raise RegistryError(f"cannot open the model registry at {self.uri} ({exc}). Fix: point "
                                f"MLFLOW_TRACKING_URI at a reachable MLflow server, or unset it for the "
                                f"embedded store under $TAGGER_HOME/registry.") from None

    def _experiment_id(self) -> str:
        exp = self.client.get_experiment_by_name(EXPERIMENT)
        if exp is not None:
            return exp.experiment_id
        location = None  # a server chooses its own artifact store
        if self.uri.startswith("sqlite:///"):  # a file store: the artifacts go beside it, not into ./mlruns
            location = (Path(self.uri[len("sqlite:///"):]).resolve().parent / "artifacts").as_uri()
        return self.client.create_experiment(EXPERIMENT, artifact_location=location)

    def register(self, name: str, model_dir: str | os.PathLike) -> Version:
        """Log `model_dir` (a head artifact: tagger_head.json and its files) as the `model` artifact of
        a new run, with the sidecar's dev metrics as metrics, its head, arch, labels and version as
        params, and its MODEL_CARD.md (when present) as the version's description; register it as
        the next version of `name`. Returns that Version. Raises ArtifactError for a directory that
        is not a head artifact, RegistryError when the store refuses."""
        from mlflow.exceptions import MlflowException

        from tagger.models.spec import artifact_version, read_spec

        spec = read_spec(model_dir)
        version = artifact_version(model_dir, spec)
        metrics = {f"dev_{k}": float(v) for k, v in (spec.extra.get("metrics") or {}).items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool)}
        card = Path(model_dir) / "MODEL_CARD.md"
        try:
            run = self.client.create_run(self._experiment_id(), run_name=f"{name}-{spec.version}",
                                         tags={"tagger.head": name})
            run_id = run.info.run_id
            for key, value in {"head": spec.head, "arch": spec.arch, "labels": ",".join(spec.labels),
                               "artifact_version": version, "source_dir": str(Path(model_dir).resolve())}.items():
                self.client.log_param(run_id, key, value[:6000])
            for key, value in metrics.items():
                self.client.log_metric(run_id, key, value)
            self.client.log_artifacts(run_id, str(model_dir), MODEL_ARTIFACT)
            self.client.set_terminated(run_id)
            try:
                self.client.create_registered_model(name)
            except MlflowException as exc:
                if "RESOURCE_ALREADY_EXISTS" not in str(exc.error_code):
                    raise
            description = card.read_text(encoding="utf-8")[:4900] if card.is_file() else ""
            mv = self.client.create_model_version(
                name, source=f"{run.info.artifact_uri}/{MODEL_ARTIFACT}", run_id=run_id, description=description,
                tags={"artifact_version": version, "arch": spec.arch})
        except MlflowException as exc:
            raise RegistryError(f"the registry at {self.uri} refused to register {model_dir} as {name}: "
                                f"{exc.message}") from None
        return self.get(name, int(mv.version))

    def get(self, name: str, version: int) -> Version:
        """Version `version` of `name`; UnknownVersionError, listing the versions there are, if none."""
        from mlflow.exceptions import MlflowException

        try:
            mv = self.client.get_model_version(name, str(version))
        except MlflowException:
            raise UnknownVersionError(f"models:/{name}/{version} is not in the registry at {self.uri}; "
                                      f"{self._known(name)}") from None
        return _version(mv)

    def by_alias(self, name: str, alias: str) -> Version | None:
        """The version `alias` points at, or None when the alias (or the model) does not exist."""
        from mlflow.exceptions import MlflowException

        try:
            return _version(self.client.get_model_version_by_alias(name, alias))
        except MlflowException:
            return None

    def _known(self, name: str) -> str:
        from mlflow.exceptions import MlflowException

        try:
            versions = sorted(int(v.version) for v in self.client.search_model_versions(f"name='{name}'"))
        except MlflowException:
            versions = []
        if not versions:
            return f"no version of {name} is registered. Fix: `tagger register --head {name} --model DIR` first."
        return f"registered versions of {name}: {', '.join(map(str, versions))}."

    def resolve(self, uri: ModelUri | str) -> Version:
        """The Version a models:/ URI names; UnknownVersionError when the alias or version is missing."""
        uri = parse_model_uri(uri) if isinstance(uri, str) else uri
        if uri.version is not None:
            return self.get(uri.name, uri.version)
        found = self.by_alias(uri.name, uri.alias)
        if found is None:
            raise UnknownVersionError(f"{uri}: the alias '{uri.alias}' is not set on {uri.name} in the registry at "
                                      f"{self.uri}; {self._known(uri.name)} Set it with `tagger promote --head "
                                      f"{uri.name} --version V` (champion) or point the head at models:/{uri.name}/V.")
        return found

    def set_alias(self, name: str, alias: str, version: int) -> None:
        """Point `alias` of `name` at `version` (moving it if it pointed elsewhere)."""
        self.client.set_registered_model_alias(name, alias, str(version))

    def set_tags(self, name: str, version: int, tags: dict) -> None:
        """Set each of `tags` (values made strings) on version `version` of `name`."""
        for key, value in tags.items():
            self.client.set_model_version_tag(name, str(version), key, str(value))

    def download(self, version: Version) -> Path:
        """A local directory holding `version`'s files: cache_root()/<name>/<version>, downloaded once
        (into a temporary folder beside it, then renamed, so a half download is never used)."""
        import mlflow.artifacts

        target = cache_root() / version.name / str(version.version)
        if (target / "tagger_head.json").is_file():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{version.version}-", dir=target.parent))
        try:
            got = Path(mlflow.artifacts.download_artifacts(artifact_uri=version.source, dst_path=str(staging),
                                                           tracking_uri=self.uri))
            try:
                os.replace(got, target)
            except OSError:
                if not (target / "tagger_head.json").is_file():  # not another process's finished copy
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return target


def _version(mv) -> Version:
    return Version(name=mv.name, version=int(mv.version), source=mv.source, aliases=tuple(mv.aliases or ()),
                   tags=dict(mv.tags or {}))


def resolve_heads(cfg: Config) -> tuple[Config, dict[str, str]]:
    """The config with every `models:/...` head path replaced by a local directory holding that
    version (downloaded once into the cache), and {head name: 'models:/<name>/<version>'} for those
    heads, recorded in the run's model version. A config without registry paths is returned as it
    is and mlflow is never imported. Raises RegistryError (a ConfigError) for an unknown model,
    alias or version."""
    if not any(is_registry_uri(h.path) for h in cfg.heads):
        return cfg, {}
    registry = Registry()
    heads, resolved = [], {}
    for head in cfg.heads:
        if is_registry_uri(head.path):
            version = registry.resolve(head.path)
            try:
                local = registry.download(version)
            except Exception as exc:
                raise RegistryError(f"head '{head.name}': could not download {version.uri} ({head.path}) from "
                                    f"{version.source} ({exc}). Fix: check that the artifact store is "
                                    f"reachable from the driver.") from None
            heads.append(dataclasses.replace(head, path=str(local)))
            resolved[head.name] = version.uri
        else:
            heads.append(head)
    return dataclasses.replace(cfg, heads=tuple(heads)), resolved
