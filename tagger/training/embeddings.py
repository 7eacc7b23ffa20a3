"""`tagger embeddings`: word vectors trained on the pool's own unlabelled text, for `tagger train
--embeddings` (a team without outside vectors gets pretrained ones offline).

The pool's items of each date go through the job's own extract and normalize (the doc_text the
heads read), are cut into units by models/words.py (jieba words with the team dictionary, or
chars), and gensim's Word2Vec (skip-gram) learns one vector per unit seen `min_count` times. The
file is word2vec's text format (models/embeddings.py). gensim is the `embeddings` extra and is
imported only here, when the command runs.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

from tagger.models.embeddings import write_word2vec
from tagger.models.words import text_units


def pool_texts(spark, cfg, dates: Sequence[str], log: Callable = print) -> list[str]:
    """The doc_text of every item the team's filter selects on `dates` (the job's extract and
    normalize), empty texts left out. Raises MissingInputError (tagger.job.extract.check_inputs) for a
    date whose pool partition or a source table is missing: a missing day is never read as empty."""
    from tagger.job.extract import pool_items

    texts: list[str] = []
    for date in dates:
        items = pool_items(spark, cfg, date)
        day = [t for t in items.select("doc_text").toPandas()["doc_text"].tolist() if isinstance(t, str) and t]
        log(f"{date}: {len(day):,} texts")
        texts.extend(day)
    return texts


def sentences(texts: Sequence[str], tokenizer: str = "word", dictionary: Sequence[str] = ()) -> list[list[str]]:
    """Word2Vec's sentences: per text its jieba words (`word`), its chars (`char`), or both as two
    sentences (`char+word`, so that both kinds of unit of a char+word TextCNN get vectors)."""
    if tokenizer != "char+word":
        return [s for s in text_units(texts, tokenizer, dictionary) if s]
    out = []
    for chars, words in zip(text_units(texts, "char"), text_units(texts, "word", dictionary)):
        out.extend(s for s in ([c for c in chars if c.strip()], words) if s)
    return out


def train_vectors(texts: Sequence[str], out: str, *, tokenizer: str = "word", dictionary: Sequence[str] = (),
                  dim: int = 128, min_count: int = 3, window: int = 5, epochs: int = 5, seed: int = 0,
                  workers: int = 2, log: Callable = print) -> dict:
    """Train skip-gram vectors of `dim` on `texts` and write them to `out` (word2vec text format).
    Returns {"texts", "units", "dim"}. Raises ImportError naming the extra when gensim is missing,
    ValueError when no unit reaches min_count."""
    try:
        from gensim.models import Word2Vec
    except ImportError:
        raise ImportError("gensim is not installed. Fix: pip install -e '.[embeddings]'") from None
    corpus = sentences(texts, tokenizer, dictionary)
    log(f"training {dim}-dimensional vectors on {len(texts):,} texts ({len(corpus):,} sentences, tokenizer {tokenizer})")
    model = Word2Vec(sentences=corpus, vector_size=dim, window=window, min_count=min_count, sg=1, epochs=epochs,
                     seed=seed, workers=workers)
    if not len(model.wv.index_to_key):
        raise ValueError(f"no unit is seen {min_count} times in {len(texts)} texts: lower --min-count")
    write_word2vec(out, list(model.wv.index_to_key), model.wv.vectors)
    log(f"wrote {out}: {len(model.wv.index_to_key):,} units x {dim}")
    return {"texts": len(texts), "units": len(model.wv.index_to_key), "dim": dim}
