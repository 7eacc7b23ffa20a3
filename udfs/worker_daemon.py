"""Spark's Python worker daemon, with torch and the model code imported once, before it forks.

Spark starts one daemon per executor (`python -m pyspark.daemon`) and forks a worker from it for
each task slot. Every fresh worker then imported torch and transformers on its own (5-8 s on 2
cores, measured with `tagger bench`). With `spark.python.daemon.module=tagger.udfs.worker_daemon` the
daemon imports them first, and the forked workers share them (copy-on-write). Nothing runs a torch
operation before the fork, so no thread pool or CUDA context is inherited.

The module must be importable where the executors run Python: it is, wherever the job's code is
(the virtualenv in local mode, the code archive of `make dist` on a cluster).
"""
import tagger.models.spec  # noqa: F401  (torch, numpy, safetensors)
import tagger.models.textcnn  # noqa: F401
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer  # noqa: F401  (not lazy)
import tagger.udfs.tagging  # noqa: F401
from pyspark.daemon import manager

if __name__ == "__main__":
    manager()
