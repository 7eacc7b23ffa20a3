"""The linear head (arch linear): trained by scikit-learn, stored without pickle, scored with numpy in
the job, identical to training-time scores; refused when a pickle sits in its directory."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tagger.models.loading import load_head
from tagger.models.linear import LINEAR_VOCAB, LinearHead
from tagger.models.spec import ArtifactError, artifact_version
from tagger.models.training import train_head
from tiny_data import DEV, LABELS, QUIET, TRAIN, make_data

TEST = make_data(300, 3)
PARENT = "内容标签/新车资讯"
# texts the training set never saw: other brands, English, digits, an empty text, a None
ODD = ["宋PLUS DM-i 谍照曝光了", "ID.4 CROZZ 开启预售!!", "", None, "Model 3 焕新版正式上市销售", "完全无关的一句话"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    base = tmp_path_factory.mktemp("linear")
    out = {}
    for tokenizer in ("char", "char+word"):
        out[tokenizer] = train_head(arch="linear", head="p0-lin", labels=LABELS, train_texts=TRAIN[0],
                                    train_labels=TRAIN[1], dev_texts=DEV[0], dev_labels=DEV[1],
                                    out_dir=str(base / tokenizer.replace("+", "_")), tokenizer=tokenizer,
                                    dictionary=["宋plus", "id.4", "model 3"], log=QUIET)
    return out


@pytest.mark.parametrize("tokenizer", ["char", "char+word"])
def test_serving_scores_equal_training_time_sklearn_scores(trained, tokenizer):
    """Break: drop sublinear tf, the L2 normalisation or the intercept in models/linear.py, and the
    scores move by far more than 1e-6."""
    r = trained[tokenizer]
    texts = TEST[0] + ODD
    reference = r.reference.predict_proba(texts)  # scikit-learn's predict_proba at training time
    head = load_head(r.path)
    assert isinstance(head, LinearHead)
    assert np.abs(head.scorer.predict_proba([t or "" for t in texts]) - reference).max() <= 1e-9
    served = head.predict_proba(texts)
    assert served.dtype == np.float32 and served.shape == (len(texts), len(LABELS))
    assert np.abs(served - reference).max() <= 1e-6
    assert reference.std() > 0.1  # the scores really vary: the comparison proves something


def test_the_head_learns_the_tiny_task(trained):
    r = trained["char"]
    assert r.dev_report["macro_f1"] >= 0.95
    head = load_head(r.path)
    from tagger.models.metrics import binarize, label_report

    assert label_report(binarize(TEST[1], LABELS), head.predict(TEST[0]), LABELS)["macro_f1"] >= 0.95


def test_the_artifact_holds_no_pickle_and_records_the_tokenizer(trained):
    d = Path(trained["char+word"].path)
    assert {p.name for p in d.iterdir()} == {"tagger_head.json", "model.safetensors", LINEAR_VOCAB, "dictionary.txt"}
    raw = json.loads((d / "tagger_head.json").read_text(encoding="utf-8"))
    assert raw["arch"] == "linear" and raw["linear"]["tokenizer"] == "char+word"
    assert raw["text"]["tokenizer"] == "char+word" and raw["text"]["dictionary_entries"] == 3
    assert (d / "dictionary.txt").read_text(encoding="utf-8").split() == ["宋plus", "id.4", "model", "3"]
    terms = json.loads((d / LINEAR_VOCAB).read_text(encoding="utf-8"))["terms"]
    assert "w:model 3" in terms or "w:宋plus" in terms or any(t.startswith("w:") for t in terms)
    from safetensors import safe_open

    with safe_open(str(d / "model.safetensors"), framework="np") as f:
        assert sorted(f.keys()) == ["coef", "idf", "intercept"]
        assert f.get_slice("coef").get_shape() == [len(LABELS), len(terms)]


@pytest.mark.parametrize("name", ["vectorizer.pkl", "model.joblib"])
def test_a_pickle_inside_a_linear_artifact_is_refused(trained, tmp_path, name):
    """Break: drop refuse_pickles from load_linear, and the artifact loads."""
    import shutil

    d = tmp_path / "lin"
    shutil.copytree(trained["char"].path, d)
    (d / name).write_bytes(b"\x80\x04K\x01.")  # pickle of the int 1
    with pytest.raises(ArtifactError, match="pickle"):
        load_head(d)


def test_pickled_weights_instead_of_safetensors_are_refused(trained, tmp_path):
    import shutil

    d = tmp_path / "lin"
    shutil.copytree(trained["char"].path, d)
    (d / "model.safetensors").rename(d / "model.pkl")
    with pytest.raises(ArtifactError, match="pickle"):
        load_head(d)


def test_replacing_the_vocabulary_changes_the_model_version(trained, tmp_path):
    """Break: drop linear_vocab.json from spec.SCORING_FILES, and a new vocabulary keeps the version."""
    import shutil

    d = tmp_path / "lin"
    shutil.copytree(trained["char"].path, d)
    before = artifact_version(d)
    vocab = json.loads((d / LINEAR_VOCAB).read_text(encoding="utf-8"))
    vocab["terms"] = list(reversed(vocab["terms"]))
    (d / LINEAR_VOCAB).write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    assert artifact_version(d) != before


def test_the_job_tags_with_the_linear_head_as_trained(trained):
    """train -> artifact -> the job's Tagger (udfs/tagging.py): every emitted score is the rounded
    training-time score, and the tags are exactly the training-time scores over the thresholds."""
    from tagger.config import HeadConf
    from tagger.udfs.rules import RuleSet
    from tagger.udfs.tagging import Tagger, TaggerSpec

    r = trained["char"]
    reference = r.reference.predict_proba(TEST[0])
    index = {f"{PARENT}/{name}": (100 + j, name) for j, name in enumerate(LABELS)}
    spec = TaggerSpec(heads=(HeadConf(name="p0", path=r.path, parent=PARENT),), gate_head="p0",
                      rules=RuleSet(version="none", rules=()), tag_index=index, device="cpu", model_version="p0=lin")
    pdf = pd.DataFrame({"itemid": [str(i) for i in range(len(TEST[0]))], "dtype": "article", "doc_text": TEST[0]})
    out = Tagger(spec).tag(pdf)
    got = np.zeros((len(pdf), len(LABELS)), dtype=bool)
    for i, row in enumerate(out["tags"]):
        for t in row:
            j = LABELS.index(t["tag_name"])
            got[i, j] = True
            assert abs(t["score"] - reference[i, j]) <= 5e-5 + 1e-6  # rounded to 4 decimals
    expected = np.round(reference, 4) >= np.asarray(r.spec.thresholds)
    np.testing.assert_array_equal(got, expected)
    assert got.any()


def test_serving_imports_neither_sklearn_nor_pickle_helpers(trained):
    """Workers need numpy and safetensors only. Break: import sklearn at the top of models/linear.py."""
    code = ("import sys; from tagger.models.loading import load_head; "
            f"h = load_head({trained['char'].path!r}); h.predict_proba(['谍照']); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('sklearn', 'joblib', 'scipy', 'jieba')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
