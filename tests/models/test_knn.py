"""Nearest-neighbour heads (arch knn, models/knn.py): an encoder (a tiny random Hugging Face BertModel
built here, or a tiny textcnn head trained here) plus a bank of labelled examples searched with faiss.
The scores are the documented formula, computed here again with numpy; growing the bank is a new
model version with no training; calibrate, evaluate and the job's tagging code run the head
unchanged; a bad bank is refused in one line."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from tagger.cli import main as cli
from tagger.models.decision import round_scores
from tagger.models.knn import KnnHead, add_examples, build_knn_head, normalize_rows
from tagger.models.loading import load_head
from tagger.models.spec import ArtifactError, artifact_version, read_spec
from tagger.models.training import train_head
from tiny_data import DEV, LABELS, QUIET, TRAIN, make_data

TEST = make_data(200, 3)
PARENT = "内容标签/新车资讯"
K = 5

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def write_jsonl(path: Path, texts, label_lists) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for t, labs in zip(texts, label_lists):
            f.write(json.dumps({"text": t, "labels": labs}, ensure_ascii=False) + "\n")
    return path


@pytest.fixture(scope="module")
def encoders(tmp_path_factory):
    """{"hf": a tiny random BertModel checkpoint (config built here, WordPiece vocab from TRAIN),
    "head": a tiny textcnn head trained on TRAIN}."""
    import torch
    from transformers import BertConfig, BertModel

    from tagger.models.tokenization import build_wordpiece_tokenizer

    base = tmp_path_factory.mktemp("knn_encoders")
    hf = base / "hf"
    tokenizer = build_wordpiece_tokenizer(TRAIN[0], hf, model_max_length=64)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    BertModel(config).eval().save_pretrained(hf, safe_serialization=True)
    tokenizer.save_pretrained(hf)
    cnn = base / "cnn"
    train_head(arch="textcnn", head="cnn", labels=LABELS, train_texts=TRAIN[0], train_labels=TRAIN[1],
               dev_texts=DEV[0], dev_labels=DEV[1], out_dir=str(cnn), epochs=3, max_length=64, seed=0,
               patience=3, log=QUIET)
    return {"hf": hf, "head": cnn}


@pytest.fixture(scope="module")
def heads(encoders, tmp_path_factory):
    """A knn head over all of TRAIN per encoder kind."""
    base = tmp_path_factory.mktemp("knn_heads")
    out = {}
    for kind, enc in encoders.items():
        build_knn_head(base / kind, enc, TRAIN[0], TRAIN[1], LABELS, k=K, head=f"p0-knn-{kind}")
        out[kind] = base / kind
    return out


def brute_force(queries: np.ndarray, bank: np.ndarray, bank_labels: np.ndarray, k: int) -> np.ndarray:
    """The module docstring's formula with numpy alone: every cosine, the k largest, w = max(cos, 0)."""
    sims = queries.astype(np.float64) @ bank.astype(np.float64).T
    top = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    w = np.maximum(np.take_along_axis(sims, top, axis=1), 0.0)
    votes = (w[:, :, None] * bank_labels[top].astype(np.float64)).sum(axis=1)
    total = w.sum(axis=1, keepdims=True)
    return np.where(total > 0, votes / np.where(total > 0, total, 1), 0.0)


@pytest.mark.parametrize("kind", ["hf", "head"])
def test_scores_equal_a_brute_force_numpy_computation(heads, kind):
    """Break: weight every neighbour 1 (drop the cosine) or divide by k instead of the weights' sum in
    knn_scores, and the scores move by far more than 1e-5."""
    head = load_head(heads[kind])
    assert isinstance(head, KnnHead) and head.encoder.kind == kind
    bank_again = head.encoder.embed(TRAIN[0])
    np.testing.assert_allclose(head.bank, bank_again, atol=1e-5)  # the bank is the examples' embeddings
    np.testing.assert_allclose(np.linalg.norm(head.bank, axis=1), 1.0, atol=1e-5)
    q = head.encoder.embed(TEST[0])
    got = head.predict_proba(TEST[0])
    assert got.dtype == np.float32 and got.shape == (len(TEST[0]), len(LABELS))
    want = brute_force(q, head.bank, head.bank_labels, K)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert 0.0 <= got.min() and got.max() <= 1.0
    assert len(np.unique(np.round(got, 4))) > 10  # weighted shares, not a few vote counts


def test_the_hf_embedding_is_the_mean_pooled_last_hidden_state(heads, encoders):
    """One text alone through transformers, mean over its tokens, unit norm = its row of a padded
    batch. Break: pool the [CLS] token, or average over the padding too."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    head = load_head(heads["hf"])
    texts = [TEST[0][0], TEST[0][1] * 3, "谍照"]
    got = head.encoder.embed(texts)
    tok = AutoTokenizer.from_pretrained(str(encoders["hf"]))
    model = AutoModel.from_pretrained(str(encoders["hf"])).eval()
    for i, text in enumerate(texts):
        enc = tok(text, truncation=True, max_length=head.max_length, return_tensors="pt")
        with torch.no_grad():
            v = model(**enc).last_hidden_state[0].mean(0).numpy()
        np.testing.assert_allclose(got[i], v / np.linalg.norm(v), atol=1e-5)


def test_the_textcnn_embedding_is_the_heads_penultimate_layer(heads, encoders):
    """sigmoid(fc(features)) is the textcnn head's own score, and the kNN embedding is those features
    at unit norm. Break: embed with the head's logits (`self.head._logits(...)`) instead of
    TextCNN.features in Encoder.embed."""
    import torch

    cnn = load_head(encoders["head"])
    knn = load_head(heads["head"])
    ids, lengths = cnn.encode(TEST[0])
    with torch.inference_mode():
        feats = cnn.model.features(torch.from_numpy(ids), torch.from_numpy(lengths)).numpy()
        proba = torch.sigmoid(cnn.model.fc(torch.from_numpy(feats))).numpy()
    np.testing.assert_allclose(proba, cnn.predict_proba(TEST[0]), atol=1e-5)
    np.testing.assert_allclose(knn.encoder.embed(TEST[0]), normalize_rows(feats), atol=1e-5)


@pytest.mark.parametrize("kind", ["hf", "head"])
def test_an_items_score_does_not_depend_on_its_batch(heads, kind):
    """The job's rerun guarantee: the rounded scores of an item alone, in batches of 7 and in the
    whole list are equal. Break: pass no lengths to TextCNN.features in Encoder.embed (the max then
    runs over the batch's padding too)."""
    head = load_head(heads[kind])
    texts = TEST[0][:60]
    whole = round_scores(head.predict_proba(texts, batch_size=64))
    sevens = round_scores(np.concatenate([head.predict_proba(texts[i:i + 7], batch_size=3)
                                          for i in range(0, len(texts), 7)]))
    alone = round_scores(np.concatenate([head.predict_proba([t]) for t in texts]))
    np.testing.assert_array_equal(whole, sevens)
    np.testing.assert_array_equal(whole, alone)


def test_adding_examples_is_a_new_version_with_no_training(encoders, tmp_path):
    """A head on 150 examples grown by 330 more scores like a head built on all 480 at once; the grown
    head is a new model version, the source is untouched, and the encoder's bytes are the same. Breaks:
    append nothing in add_examples (the grown head scores like the small one); leave the bank out of a
    knn head's digest in artifact_version (a bank replaced in place keeps its version)."""
    small = tmp_path / "small"
    build_knn_head(small, encoders["head"], TRAIN[0][:150], TRAIN[1][:150], LABELS, k=K)
    before = artifact_version(small)
    small_scores = load_head(small).predict_proba(TEST[0])
    grown = tmp_path / "grown"
    spec = add_examples(small, grown, TRAIN[0][150:], TRAIN[1][150:])
    assert artifact_version(small) == before  # the source head is never changed
    assert artifact_version(grown) != before and spec.version != read_spec(small).version
    assert spec.extra["bank"]["examples"] == len(TRAIN[0]) and spec.extra["grown_from"] == read_spec(small).version
    assert (grown / "encoder" / "model.safetensors").read_bytes() == (small / "encoder" / "model.safetensors").read_bytes()
    full = tmp_path / "full"
    build_knn_head(full, encoders["head"], TRAIN[0], TRAIN[1], LABELS, k=K)
    grown_scores = load_head(grown).predict_proba(TEST[0])
    np.testing.assert_allclose(grown_scores, load_head(full).predict_proba(TEST[0]), atol=1e-5)
    assert np.abs(grown_scores - small_scores).max() > 0.1  # the new examples changed the scores
    # a bank replaced in place under the same sidecar is a new model version too (a reused worker reloads)
    in_place = tmp_path / "in_place"
    shutil.copytree(small, in_place)
    v_small = artifact_version(in_place)
    shutil.copy2(grown / "model.safetensors", in_place / "model.safetensors")
    assert artifact_version(in_place) != v_small
    with pytest.raises(ValueError, match=r"labels \['新标签'\] are not labels of the head"):
        add_examples(small, tmp_path / "bad", ["新车"], [["新标签"]])
    with pytest.raises(FileExistsError, match="exists and is not empty"):
        add_examples(small, grown, ["新车"], [["谍照"]])


def test_the_cli_builds_grows_calibrates_and_evaluates_a_knn_head(encoders, tmp_path):
    """tagger knn-build, knn-add, calibrate and evaluate on JSON-lines files, exit 0 each; calibrate
    moves the thresholds (a new model version) and evaluate reports the head's real F1."""
    train = write_jsonl(tmp_path / "train.jsonl", *TRAIN)
    more = write_jsonl(tmp_path / "more.jsonl", *make_data(80, 7))
    dev = write_jsonl(tmp_path / "dev.jsonl", *DEV)
    test = write_jsonl(tmp_path / "test.jsonl", *TEST)
    labels_file = tmp_path / "label.txt"
    labels_file.write_text("\n".join(LABELS) + "\n", encoding="utf-8")
    runner = CliRunner()
    head = tmp_path / "p0_knn"
    r = runner.invoke(cli, ["knn-build", "--encoder", str(encoders["head"]), "--data", str(train), "--out", str(head),
                            "--k", "5", "--labels-file", str(labels_file)])
    assert r.exit_code == 0, r.output
    assert "480 examples" in r.output and read_spec(head).labels == LABELS
    grown = tmp_path / "p0_knn_v2"
    r = runner.invoke(cli, ["knn-add", "--model", str(head), "--data", str(more), "--out", str(grown)])
    assert r.exit_code == 0, r.output
    assert "560 examples (+80)" in r.output
    v0 = artifact_version(grown)
    r = runner.invoke(cli, ["calibrate", "--model", str(grown), "--dev", str(dev), "--precision", "0.8",
                            "--confidence", "0.5"])
    assert r.exit_code == 0, r.output
    spec = read_spec(grown)
    assert spec.arch == "knn" and spec.thresholds != [0.5] * len(LABELS) and "calibration" in spec.extra
    assert artifact_version(grown) != v0
    r = runner.invoke(cli, ["evaluate", "--model", str(grown), "--data", str(test), "--format", "json"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.output[r.output.index("{"):])
    assert report["arch"] == "knn"
    assert report["macro_f1"] >= 0.8  # the tiny keyword task, read through a trained textcnn's features
    # adding examples with a label the head does not have: one line, exit 2
    odd = write_jsonl(tmp_path / "odd.jsonl", ["新车"], [["新标签"]])
    r = runner.invoke(cli, ["knn-add", "--model", str(head), "--data", str(odd), "--out", str(tmp_path / "v3")])
    assert r.exit_code == 2 and "not labels of the head" in r.output


def _rewrite_bank(d: Path, **arrays):
    from safetensors.numpy import load_file, save_file

    current = load_file(str(d / "model.safetensors"))
    current.update(arrays)
    for name in [n for n, v in arrays.items() if v is None]:
        current.pop(name)
    save_file(current, str(d / "model.safetensors"))


def _edit_sidecar(d: Path, **knn):
    raw = json.loads((d / "tagger_head.json").read_text(encoding="utf-8"))
    raw["knn"].update(knn)
    (d / "tagger_head.json").write_text(json.dumps(raw, ensure_ascii=False), encoding="utf-8")


@pytest.mark.parametrize("case, match", [
    ("label_columns", r"bank_labels has shape \[480, 5\], expected \(480, 4\)"),
    ("label_rows", r"bank_labels has shape \[479, 4\], expected \(480, 4\)"),
    ("flat_bank", r"bank must be \(examples, dimensions\)"),
    ("no_labels", r"tensor 'bank_labels' is missing"),
    ("k_too_big", r"k is 1000 but the bank holds only 480 examples"),
    ("k_zero", r"k must be an integer >= 1"),
    ("no_encoder", r"the encoder directory is missing"),
])
def test_a_bad_bank_is_refused_in_one_line(heads, tmp_path, case, match):
    """load_head and the job's start (artifact_version) name the file and the fix. Break: drop the
    bank_labels check in spec.validate_knn, and a head with an extra label column loads."""
    d = tmp_path / "bad"
    shutil.copytree(heads["hf"], d)
    bank = load_head(heads["hf"]).bank
    if case == "label_columns":
        _rewrite_bank(d, bank_labels=np.zeros((480, 5), np.uint8))
    elif case == "label_rows":
        _rewrite_bank(d, bank_labels=np.zeros((479, 4), np.uint8))
    elif case == "flat_bank":
        _rewrite_bank(d, bank=bank.reshape(-1))
    elif case == "no_labels":
        _rewrite_bank(d, bank_labels=None)
    elif case == "k_too_big":
        _edit_sidecar(d, k=1000)
    elif case == "k_zero":
        _edit_sidecar(d, k=0)
    elif case == "no_encoder":
        shutil.rmtree(d / "encoder")
    for check in (load_head, artifact_version):
        with pytest.raises(ArtifactError, match=match) as exc:
            check(d)
        assert "Fix:" in str(exc.value) and "\n" not in str(exc.value)


def test_heads_without_an_embedding_are_refused_as_encoders(tmp_path):
    lin = tmp_path / "lin"
    train_head(arch="linear", head="lin", labels=LABELS, train_texts=TRAIN[0], train_labels=TRAIN[1],
               dev_texts=DEV[0], dev_labels=DEV[1], out_dir=str(lin), log=QUIET)
    with pytest.raises(ArtifactError, match="a linear head has no embedding a kNN head can search"):
        build_knn_head(tmp_path / "knn", lin, TRAIN[0], TRAIN[1], LABELS)
    assert not (tmp_path / "knn").exists()


def test_faiss_is_imported_only_when_a_head_is_knn(heads, encoders):
    """A textcnn head loads and scores without faiss; a knn head brings it in. Break: `import faiss`
    at the top of models/knn.py and import that module from models/loading.py's top."""
    code = ("import sys; from tagger.models.loading import load_head; h = load_head(sys.argv[1]); "
            "h.predict_proba(['谍照']); print('faiss' in sys.modules)")
    plain = subprocess.run([sys.executable, "-c", code, str(encoders["head"])], capture_output=True, text=True,
                           check=True).stdout.strip()
    knn = subprocess.run([sys.executable, "-c", code, str(heads["hf"])], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert (plain, knn) == ("False", "True")


def test_the_job_tags_with_a_knn_head_once_per_tag_and_reruns_equal(heads, encoders, tmp_path):
    """The job's own code path without Spark: a config whose P0 head is a knn head under the textcnn
    gate, checked at job start by build_spec (tagger/job/tag.py), then tag_partitions (the
    mapInPandas function of udfs/tagging.py) over the same items in two different partitionings and
    twice: every item carries each tag at most once, the outputs are equal row for row, and each knn
    tag is the head's own rounded score over its threshold. Break: as in the batch test above (no
    lengths to TextCNN.features): the two partitionings then tag differently."""
    from conftest import write_config
    from tagger.config import load_config
    from tagger.job.tag import build_spec
    from tagger.lifecycle.gate import synthetic_tag_index
    from tagger.rules_file import load_rules
    from tagger.udfs import tagging

    gate = tmp_path / "gate"
    gate_labels = [["新车资讯"] if labs else [] for labs in TRAIN[1]]
    train_head(arch="textcnn", head="gate", labels=["新车资讯"], train_texts=TRAIN[0], train_labels=gate_labels,
               dev_texts=DEV[0], dev_labels=[["新车资讯"] if labs else [] for labs in DEV[1]], out_dir=str(gate),
               epochs=2, max_length=64, seed=0, patience=2, log=QUIET)

    def edit(raw):
        raw["heads"] = [h for h in raw["heads"] if h["name"] in ("gate", "p0")]
        for h in raw["heads"]:
            h["path"] = str(gate if h["name"] == "gate" else heads["head"])

    cfg = load_config(write_config(tmp_path, edit=edit))
    index = synthetic_tag_index(cfg, load_rules(cfg.rules_path), [(h, read_spec(h.path)) for h in cfg.heads])
    spec, versions, _ = build_spec(cfg, index, cfg.tables.tag_dim, 1)
    assert f"p0={artifact_version(heads['head'])}" in versions
    texts = TEST[0] + ["北京车展现场直击", "", None]
    pdf = pd.DataFrame({"itemid": [f"i{i}" for i in range(len(texts))], "dtype": "article", "doc_text": texts})

    def run(parts):
        tagging._WORKER_TAGGERS.clear()  # a fresh worker each run
        out = pd.concat(list(tagging.tag_partitions(spec)(iter(parts))), ignore_index=True)
        return out.sort_values("itemid", kind="stable").reset_index(drop=True)

    one = run([pdf])
    chunks = run([pdf.iloc[i:i + 37] for i in range(0, len(pdf), 37)])
    again = run([pdf.iloc[::-1].reset_index(drop=True)])
    for other in (chunks, again):
        assert len(other) == len(pdf)
        assert one["tag_ids"].tolist() == other["tag_ids"].tolist()
        assert [[(t["tag_path"], t["score"]) for t in row] for row in one["tags"]] == \
               [[(t["tag_path"], t["score"]) for t in row] for row in other["tags"]]
    for row in one["tags"]:
        paths = [t["tag_path"] for t in row]
        assert len(paths) == len(set(paths))
    knn = load_head(heads["head"])
    by_id = dict(zip(pdf["itemid"], pdf["doc_text"]))
    hits = 0
    for itemid, row in zip(one["itemid"], one["tags"]):
        for t in row:
            if t["source"] == "p0":
                hits += 1
                j = LABELS.index(t["tag_name"])
                score = round_scores(knn.predict_proba([by_id[itemid]]))[0, j]
                assert t["score"] == pytest.approx(float(score)) and score >= knn.spec.thresholds[j]
    assert hits > 50


def test_a_configured_head_can_be_built_as_knn_by_tagger_train(encoders, tmp_path):
    """`train: {arch: knn, encoder: ..., k: ...}` in a config's heads: read by load_config and built by
    the warehouse training's train_artifact (what `tagger train` runs per head) from the training split,
    with no training. Wrong options are config errors naming the key."""
    from conftest import write_config
    from tagger.config import ConfigError, load_config
    from tagger.training.from_warehouse import train_artifact

    def with_train(train):
        def edit(raw):
            next(h for h in raw["heads"] if h["name"] == "p0")["train"] = train
        return edit

    cfg = load_config(write_config(tmp_path, edit=with_train(
        {"arch": "knn", "labels": "children", "precision": 0.8, "encoder": str(encoders["head"]), "k": 3})))
    p0 = next(h for h in cfg.heads if h.name == "p0")
    assert p0.train.arch == "knn" and p0.train.options == {"encoder": str(encoders["head"]), "k": 3}
    out = tmp_path / "p0"
    train_artifact(p0, LABELS, {"train": TRAIN, "dev": DEV, "test": TEST}, out, log=QUIET)
    spec = read_spec(out)
    assert spec.arch == "knn" and spec.extra["knn"]["k"] == 3 and spec.extra["bank"]["examples"] == len(TRAIN[0])
    built = load_head(out)
    np.testing.assert_allclose(built.bank, built.encoder.embed(TRAIN[0]), atol=1e-5)
    for train, key in [({"arch": "knn", "labels": "children"}, "encoder"),
                       ({"arch": "knn", "labels": "children", "encoder": "x", "epochs": 2}, "epochs"),
                       ({"arch": "textcnn", "labels": "children", "k": 5}, "k")]:
        with pytest.raises(ConfigError, match=rf"key 'heads\[1\]\.train\.{key}'"):
            load_config(write_config(tmp_path, name="bad.yaml", edit=with_train(train)))


def test_knn_scores_by_hand_negative_neighbours_count_nothing():
    """Three unit bank rows in 2-d and k = 3, worked by hand: a neighbour pointing away (cosine < 0)
    weighs 0, the others weigh their cosine; when every weight is 0 the score is 0. Breaks: |cosine|
    as the weight, or 0.5 instead of 0 for an item with no positive weight."""
    from tagger.models.knn import knn_scores

    bank = np.array([[1.0, 0.0], [0.6, 0.8], [-1.0, 0.0]], dtype=np.float32)
    labels = np.array([[1, 0], [0, 1], [1, 1]], dtype=np.uint8)
    q = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    got = knn_scores(q, bank, labels, k=3)
    # item 0: weights 1, 0.6, 0 -> label 0: 1/1.6, label 1: 0.6/1.6
    np.testing.assert_allclose(got[0], [1 / 1.6, 0.6 / 1.6], atol=1e-6)
    # item 1: weights 0 (cos -1), 0 (cos -0.6), 1 -> the third row alone
    np.testing.assert_allclose(got[1], [1.0, 1.0], atol=1e-6)
    # item 2: weights 0 (cos 0), 0.8, 0 (cos 0) -> the second row alone
    np.testing.assert_allclose(got[2], [0.0, 1.0], atol=1e-6)
    # no neighbour with a positive cosine: 0, not a guess
    only_away = knn_scores(np.array([[0.0, -1.0]], dtype=np.float32), bank[[0, 2]], labels[[0, 2]], k=2)
    np.testing.assert_allclose(only_away, [[0.0, 0.0]], atol=1e-6)
