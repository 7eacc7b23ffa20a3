"""Small helpers the local-service scripts share (scripts/thrift_server.py, metastore.py,
standalone_cluster.py): where the pip pyspark lives, and a free TCP port."""
from __future__ import annotations

import socket
from pathlib import Path


def spark_home() -> Path:
    """The pip pyspark's folder (its bin/ and jars/). Raises ImportError without pyspark."""
    import pyspark

    return Path(pyspark.__file__).resolve().parent


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (another process may take it before it is used)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]
