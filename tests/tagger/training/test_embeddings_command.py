"""`tagger embeddings` on the pool's own text (tagger/training/embeddings.py): the job's extract and
normalize for each date, gensim's vectors written in word2vec text format, a missing day refused."""
from click.testing import CliRunner

from conftest import SEED_START
from tagger.cli import main
from tagger.job.extract import extract
from tagger.job.normalize import normalize
from tagger.models.embeddings import word2vec_header


def test_vectors_from_the_pools_text_and_a_missing_day_refused(spark, cfg, cfg_path, demo_data, tmp_path):
    out = tmp_path / "vectors.txt"
    result = CliRunner().invoke(main, ["--config", str(cfg_path), "embeddings", "--start", SEED_START,
                                       "--end", SEED_START, "--out", str(out), "--min-count", "2", "--epochs", "1"])
    assert result.exit_code == 0, result.output
    sources = extract(spark, cfg, SEED_START)
    expected = normalize(sources.pool, sources.asr, sources.ocr, cfg.text).items.count()
    assert f"{SEED_START}: {expected:,} texts" in result.output  # every selected item's doc_text, none lost
    count, dim = word2vec_header(out)
    assert count > 100 and dim == 128

    missing = CliRunner().invoke(main, ["--config", str(cfg_path), "embeddings", "--start", "2023-12-31",
                                        "--end", SEED_START, "--out", str(tmp_path / "x.txt")])
    assert missing.exit_code == 4, missing.output
    assert "pt=2023-12-31" in missing.output and not (tmp_path / "x.txt").exists()
