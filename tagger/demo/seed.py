"""Write generated demo data into the (embedded) Hive catalog under the production table names."""
from __future__ import annotations

import time

import pandas as pd
from pyspark.sql import SparkSession

from tagger.config import Config
from tagger.demo.generator import DemoData, generate
from tagger.models.progress import Progress
from tagger.sql_files import run_sql

# (frame attribute, table attribute in cfg.tables, DDL file, partition column, Spark schema)
TABLES = [
    ("pool", "pool", "demo_ddl_pool", "pt",
     "itemid string, title string, summary string, relate_app_tag_id string, dtype string, "
     "recommend_grade string, gc string, create_time string, pt string"),
    ("asr", "asr", "demo_ddl_asr", "dt", "id bigint, video_id string, result_asr string, dt string"),
    ("ocr", "ocr", "demo_ddl_ocr", "dt", "id bigint, video_id string, ocr_info string, dt string"),
    ("tag_dim", "tag_dim", "demo_ddl_tag_dim", "dt",
     "id bigint, tag_name string, tag_path string, tag_path_name string, tag_type_name string, "
     "status int, dt string"),
    ("truth", "truth", "demo_ddl_truth", "pt",
     "itemid string, labels array<string>, ambiguous boolean, mislabelled boolean, pt string"),
]


def write_demo(spark: SparkSession, cfg: Config, data: DemoData, log=None) -> dict[str, int]:
    """(Re)write every partition present in `data` into cfg.tables' pool, asr, ocr, tag_dim and
    truth tables (created if missing); other partitions are left alone. Returns {table name: rows
    written}. `log`, when given, shows progress by rows written (a bar on a terminal, else a line
    per table with elapsed time and ETA). Spark errors propagate."""
    counts = {}
    total = sum(len(getattr(data, attr)) for attr, *_ in TABLES)
    with Progress(total, "seeding", log=log or print, unit="row", enabled=log is not None,
                  every_fraction=0.0) as shown:  # a line per table: the tables are the steps
        for attr, table_attr, ddl, part, schema in TABLES:
            table = getattr(cfg.tables, table_attr)
            run_sql(spark, "ddl_database", database=table.split(".")[0])
            run_sql(spark, ddl, table=table)
            frame: pd.DataFrame = getattr(data, attr)
            columns = [c.split()[0] for c in schema.split(", ")]
            df = spark.createDataFrame(frame[columns], schema)
            ordered = [f.name for f in spark.table(table).schema.fields]
            df.select(*ordered).write.insertInto(table, overwrite=True)  # dynamic: only these partitions
            counts[table] = len(frame)
            shown.update(len(frame), detail=f"({table} done)")
    return counts


def seed(spark: SparkSession, cfg: Config, items: int, start_date: str, days: int, seed: int = 7,
         log=print) -> dict[str, int]:
    """Generate demo data (`items` selected items over `days` days from `start_date`, yyyy-MM-dd) and
    write it into cfg.tables' pool, asr, ocr, tag_dim and truth tables (created if missing; only the
    generated partitions are overwritten). Returns {table name: rows written}; progress and times
    (seconds) go to `log`. ValueError from generate if items < 0 or days < 1."""
    started = time.perf_counter()
    log(f"generating {items:,} demo items over {days} days from {start_date} ...")
    data = generate(items, start_date, days, seed=seed)
    log(f"generated {items:,} items over {days} days from {start_date} in {time.perf_counter() - started:.1f}s")
    counts = write_demo(spark, cfg, data, log=log)
    for table, n in counts.items():
        log(f"  {table:<60} {n:>10,} rows")
    log(f"seeded in {time.perf_counter() - started:.1f}s")
    return counts
