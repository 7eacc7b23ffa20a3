"""The model-lifecycle commands (docs/lifecycle.md): `tagger register`, `tagger promote`,
`tagger rollback-model`, `tagger triage` and `tagger sample`.

mlflow and cleanlab (the `lifecycle` extra) are imported inside the commands that need them.

Exit codes: 0 done; 2 bad usage (an unknown registry version, --force without --reason); 3 a bad
config, model artifact, data file or an unreachable registry; 6 the golden-set gate refused the
promotion (the alias stayed where it was); 1 anything else.
"""
from __future__ import annotations

import sys

import click

from tagger.cli.common import EXIT_CONFIG, EXIT_USAGE

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
