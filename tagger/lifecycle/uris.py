"""`models:/<name>@<alias>` and `models:/<name>/<version>`: a head path that names a registry
version instead of a directory. Parsing only, no mlflow: the job and the config loader import this."""
from __future__ import annotations

import re
from dataclasses import dataclass

PREFIX = "models:/"
_URI = re.compile(r"^models:/(?P<name>[A-Za-z0-9_][A-Za-z0-9_.-]{0,63})(?:@(?P<alias>[A-Za-z_][A-Za-z0-9_-]{0,63})"
                  r"|/(?P<version>[1-9][0-9]*))$")


@dataclass(frozen=True)
class ModelUri:
    """A parsed registry URI: the registered model's name and either an alias or a version number."""
    name: str
    alias: str | None = None
    version: int | None = None

    def __str__(self) -> str:
        return f"{PREFIX}{self.name}@{self.alias}" if self.alias else f"{PREFIX}{self.name}/{self.version}"


def is_registry_uri(path: str) -> bool:
    """True when `path` starts with models:/ (whether or not it is well formed)."""
    return str(path).startswith(PREFIX)


def parse_model_uri(path: str) -> ModelUri:
    """`models:/p0@champion` -> ModelUri('p0', alias='champion'); `models:/p0/3` -> ModelUri('p0', version=3).
    Raises ValueError, with the two accepted forms, for anything else."""
    m = _URI.match(str(path))
    if not m:
        raise ValueError(f"'{path}' is not a registry model URI: use models:/<name>@<alias> (e.g. "
                         f"models:/p0@champion) or models:/<name>/<version> (e.g. models:/p0/3)")
    return ModelUri(m["name"], alias=m["alias"], version=int(m["version"]) if m["version"] else None)
