"""Training, artifact round trips and refusal paths of the tagging heads, on a tiny synthetic
Chinese keyword data set (built here: nothing is downloaded)."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from tagger.models.spec import ArtifactError, HeadSpec, read_spec, write_spec
from tagger.models.loading import load_head
from tagger.models.textcnn import build_textcnn
from tagger.models.tokenization import CharVocab, build_wordpiece_tokenizer, encode_with_tokenizer
from tagger.models.training import build_random_bert_head, train_head

from tiny_data import DEV, LABELS, NOISE, PHRASES, QUIET, TRAIN, make_data  # noqa: F401 (re-exported)


def probe_texts():
    """Very different lengths, deliberately not sorted, incl. empty, None and over-long."""
    rng = random.Random(7)
    long_text = "".join(rng.choice(NOISE) for _ in range(150)) + "开启预售"
    return ["谍照", "", long_text, "正式上市销售" + "比亚迪" * 60, None, "工信部申报图", "车",
            "路试谍照曝光" * 3, "内饰座椅" * 20 + "申报信息曝光", "盲订通道开启吉利"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    base = tmp_path_factory.mktemp("heads")
    out = {}
    out["textcnn"] = train_head(arch="textcnn", head="p0-cnn", labels=LABELS, train_texts=TRAIN[0],
                                train_labels=TRAIN[1], dev_texts=DEV[0], dev_labels=DEV[1],
                                out_dir=str(base / "cnn"), epochs=12, max_length=64, log=QUIET)
    out["bert"] = train_head(arch="bert", head="p0-bert", labels=LABELS, train_texts=TRAIN[0],
                             train_labels=TRAIN[1], dev_texts=DEV[0], dev_labels=DEV[1],
                             out_dir=str(base / "bert"), epochs=10, max_length=64, patience=1, log=QUIET)
    return out


# -- training ------------------------------------------------------------------------------------

@pytest.mark.parametrize("arch", ["textcnn", "bert"])
def test_training_reaches_high_dev_f1(trained, arch):
    r = trained[arch]
    assert r.dev_report["macro_f1"] >= 0.9, r.dev_report
    for name in LABELS:
        assert r.dev_report["labels"][name]["f1"] >= 0.85, (name, r.dev_report["labels"][name])
    assert r.seconds > 0 and r.dev_report["epochs_run"] >= 1


@pytest.mark.parametrize("arch", ["textcnn", "bert"])
def test_artifact_layout_and_sidecar(trained, arch):
    r = trained[arch]
    d = Path(r.path)
    files = {p.name for p in d.iterdir()}
    assert {"tagger_head.json", "model.safetensors", "vocab.txt"} <= files
    assert not any(f.endswith((".bin", ".pt", ".pkl")) for f in files)
    assert not any(p.name.startswith(f".{d.name}.staging") for p in d.parent.iterdir())
    raw = json.loads((d / "tagger_head.json").read_text(encoding="utf-8"))
    assert raw["format_version"] == 1 and raw["arch"] == arch and raw["labels"] == LABELS
    assert raw["enabled"] == [True] * len(LABELS)
    assert all(0.05 <= t <= 0.95 for t in raw["thresholds"])
    assert raw["version"].startswith(r.spec.head + "-") and len(raw["version"].rsplit("-", 1)[1]) == 8
    assert raw["trained_on"]["n_train"] == len(TRAIN[0]) and raw["trained_on"]["n_dev"] == len(DEV[0])
    assert raw["metrics"]["macro_f1"] == pytest.approx(r.dev_report["macro_f1"])
    if arch == "textcnn":
        assert raw["textcnn"]["kernel_sizes"] == [2, 3, 4, 5] and raw["textcnn"]["num_filters"] == 128
        vocab = (d / "vocab.txt").read_text(encoding="utf-8").split("\n")
        assert vocab[:2] == ["[PAD]", "[UNK]"]
    else:
        assert (d / "config.json").is_file()
        cfg = json.loads((d / "config.json").read_text())
        assert cfg["problem_type"] == "multi_label_classification"
        assert [cfg["id2label"][str(i)] for i in range(len(LABELS))] == LABELS
    spec = read_spec(d)
    assert spec == r.spec


@pytest.mark.parametrize("arch", ["textcnn", "bert"])
def test_reload_matches_in_memory_in_original_order(trained, arch):
    r = trained[arch]
    texts = probe_texts()
    loaded = load_head(r.path, device="cpu")
    a = loaded.predict_proba(texts)
    b = r.head.predict_proba(texts)
    assert a.shape == (len(texts), len(LABELS)) and a.dtype == np.float32
    assert ((a >= 0) & (a <= 1)).all()
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
    # row i is text i: every text scored alone gives the same row as the length-sorted batch
    single = np.vstack([loaded.predict_proba([t]) for t in texts])
    np.testing.assert_allclose(a, single, rtol=0, atol=1e-5)
    # and the scores mean something in the original order
    decided = loaded.predict(texts)
    assert decided[3, LABELS.index("新车上市")] and decided[5, LABELS.index("申报图")]
    assert decided[7, LABELS.index("谍照")] and decided[9, LABELS.index("预售")]


@pytest.mark.parametrize("arch", ["textcnn", "bert"])
def test_scores_do_not_depend_on_batch_size(trained, arch):
    loaded = load_head(trained[arch].path, device="cpu")
    texts = probe_texts() + DEV[0][:40]
    ref = loaded.predict_proba(texts, batch_size=64)
    for bs in (1, 3, 17):
        np.testing.assert_allclose(loaded.predict_proba(texts, batch_size=bs), ref, rtol=0, atol=1e-5)


@pytest.mark.parametrize("arch", ["textcnn", "bert"])
def test_empty_input(trained, arch):
    loaded = load_head(trained[arch].path)
    assert loaded.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    out = loaded.predict_proba([])
    assert out.shape == (0, len(LABELS)) and out.dtype == np.float32


def test_training_is_deterministic(tmp_path):
    kw = dict(arch="textcnn", head="p0-cnn", labels=LABELS, train_texts=TRAIN[0][:200], train_labels=TRAIN[1][:200],
              dev_texts=DEV[0][:50], dev_labels=DEV[1][:50], epochs=1, max_length=48, log=QUIET)
    a = train_head(out_dir=str(tmp_path / "a"), **kw)
    b = train_head(out_dir=str(tmp_path / "b"), **kw)
    assert a.spec.version.rsplit("-", 1)[1] == b.spec.version.rsplit("-", 1)[1]  # sha256 of the weights
    assert a.spec.thresholds == b.spec.thresholds
    c = train_head(out_dir=str(tmp_path / "a"), **{**kw, "seed": 1})  # overwrites a head dir
    assert c.spec.version.rsplit("-", 1)[1] != a.spec.version.rsplit("-", 1)[1]


def test_logs_one_line_per_epoch_and_progress_with_an_eta_off_a_terminal(tmp_path):
    lines = []  # pytest captures stdout and stderr: not a terminal, so progress comes as lines
    train_head(arch="textcnn", head="g", labels=["预售"], train_texts=TRAIN[0][:200], train_labels=TRAIN[1][:200],
               dev_texts=DEV[0][:50], dev_labels=DEV[1][:50], out_dir=str(tmp_path / "g"), epochs=2, max_length=32,
               pos_weight="none", patience=5, log=lines.append)
    epoch_lines = [ln for ln in lines if " epoch " in ln and " loss " in ln]
    assert 1 <= len(epoch_lines) <= 2
    assert all("macro-F1" in ln and ln.rstrip().endswith("s") for ln in epoch_lines)
    progress = [ln for ln in lines if ln.startswith("[g] epoch 1/2: ")]
    # 200 texts / 32 per batch = 7 batches: a line per batch (each is more than 10% of the epoch)
    assert len(progress) == 7 and progress[-1].startswith("[g] epoch 1/2: 7/7 batches (100%), elapsed ")
    assert all(", elapsed " in ln and ", ETA " in ln for ln in progress)
    assert lines.index(progress[-1]) < lines.index(epoch_lines[0])


def test_refuses_to_overwrite_foreign_dir(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError):
        train_head(arch="textcnn", head="g", labels=["预售"], train_texts=TRAIN[0], train_labels=TRAIN[1],
                   dev_texts=DEV[0], dev_labels=DEV[1], out_dir=str(tmp_path / "x"), epochs=1, log=QUIET)
    assert (tmp_path / "x" / "notes.txt").read_text() == "keep me"


# -- building blocks -----------------------------------------------------------------------------

def test_textcnn_factorized_forward_matches_conv():
    torch.manual_seed(0)
    m = build_textcnn(50, 3).eval()
    ids = torch.randint(2, 50, (5, 12))
    lengths = torch.tensor([12, 7, 1, 0, 4])
    ids[torch.arange(12)[None, :] >= lengths[:, None]] = 0
    ref = m.forward_conv(ids, lengths)
    np.testing.assert_allclose(m(ids, lengths).detach().numpy(), ref.detach().numpy(), atol=1e-5)
    with torch.inference_mode():
        np.testing.assert_allclose(m(ids, lengths, m.precompute_tables()).numpy(), ref.detach().numpy(), atol=1e-5)
    # padding beyond a row's length changes nothing
    wide = torch.nn.functional.pad(ids, (0, 9))
    np.testing.assert_allclose(m(wide, lengths).detach().numpy(), ref.detach().numpy(), atol=1e-5)


def test_char_vocab_encode_and_roundtrip(tmp_path):
    v = CharVocab.build(["aab", "AB\tc", "谍谍照"], min_freq=1)
    assert v.tokens[:2] == ["[PAD]", "[UNK]"] and v.tokens[2] in ("a", "b", "谍")
    assert "\t" not in v.tokens
    ids, lens = v.encode(["谍照x", None, "AbAbAb"], max_length=4, min_width=5)
    assert ids.shape == (3, 5) and lens.tolist() == [3, 0, 4]
    t = {tok: i for i, tok in enumerate(v.tokens)}
    assert ids[0].tolist() == [t["谍"], t["照"], 1, 0, 0]  # x unseen -> [UNK]
    assert ids[1].tolist() == [0] * 5
    assert ids[2].tolist() == [t["a"], t["b"], t["a"], t["b"], 0]  # lower-cased, truncated
    v.save(tmp_path / "vocab.txt")
    assert CharVocab.load(tmp_path / "vocab.txt").tokens == v.tokens


def test_wordpiece_tokenizer_keeps_every_char_and_pads():
    tok = build_wordpiece_tokenizer(TRAIN[0], model_max_length=32)
    ids, lens = encode_with_tokenizer(tok, ["开启预售", "", "罕见字"], max_length=6)
    assert lens.tolist() == [6, 2, 5]
    assert tok.unk_token_id not in ids[0].tolist()  # every training char is in the vocab
    assert ids[1, 2:].tolist() == [tok.pad_token_id] * 4
    # long articles are cut before tokenizing; the kept tokens are the same
    long_text = "".join(TRAIN[0][:200])
    ids, lens = encode_with_tokenizer(tok, [long_text], max_length=20)
    full = tok(long_text, truncation=True, max_length=20)["input_ids"]
    assert ids[0, : lens[0]].tolist() == full and len(long_text) > 8 * 20 + 64


# -- foreign checkpoints and refusals -----------------------------------------------------------

def _foreign_dir(tmp_path, problem_type, num_labels, id2label, name="hf"):
    from transformers import BertConfig, BertForSequenceClassification

    d = tmp_path / name
    tok = build_wordpiece_tokenizer(TRAIN[0], model_max_length=48)
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64, num_labels=num_labels,
                     id2label=id2label, label2id={v: k for k, v in id2label.items()}, problem_type=problem_type)
    model = BertForSequenceClassification(cfg).eval()
    model.save_pretrained(d, safe_serialization=True)
    tok.save_pretrained(d)
    return d, model, tok


def test_foreign_multilabel_checkpoint_loads_without_sidecar(tmp_path):
    d, model, tok = _foreign_dir(tmp_path, "multi_label_classification", 3, {0: "预售", 1: "谍照", 2: "官图"})
    assert not (d / "tagger_head.json").exists()
    spec = read_spec(d)
    assert spec.arch == "bert" and spec.labels == ["预售", "谍照", "官图"]
    assert spec.thresholds == [0.5] * 3 and spec.max_length == 48
    head = load_head(d, device="cpu")
    texts = ["开启预售", "路试谍照曝光" * 30, ""]
    got = head.predict_proba(texts)
    enc = tok(texts, truncation=True, max_length=48, padding=True, return_tensors="pt")
    with torch.no_grad():
        want = torch.sigmoid(model(**enc).logits).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_foreign_single_label_two_classes_is_one_label_head(tmp_path):
    d, model, tok = _foreign_dir(tmp_path, "single_label_classification", 2, {0: "其他", 1: "新车资讯"})
    head = load_head(d, device="cpu")
    assert head.spec.labels == ["新车资讯"]
    texts = ["正式上市销售", "保养"]
    got = head.predict_proba(texts)
    enc = tok(texts, truncation=True, max_length=48, padding=True, return_tensors="pt")
    with torch.no_grad():
        want = torch.softmax(model(**enc).logits, -1)[:, 1:].numpy()
    assert got.shape == (2, 1)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_pickle_only_dir_is_refused(tmp_path, trained):
    d = tmp_path / "pickled"
    shutil.copytree(trained["bert"].path, d)
    from safetensors.torch import load_file

    torch.save(load_file(str(d / "model.safetensors")), d / "pytorch_model.bin")
    (d / "model.safetensors").unlink()
    with pytest.raises(ArtifactError) as ei:
        load_head(d)
    msg = str(ei.value)
    assert "pytorch_model.bin" in msg and "safetensors" in msg and "safe_serialization=True" in msg
    assert str(d) in msg


def test_truncated_weights_are_refused(tmp_path, trained):
    for arch in ("textcnn", "bert"):
        d = tmp_path / f"trunc-{arch}"
        shutil.copytree(trained[arch].path, d)
        w = d / "model.safetensors"
        data = w.read_bytes()
        w.write_bytes(data[: len(data) // 2])
        with pytest.raises(ArtifactError, match="model.safetensors") as ei:
            load_head(d)
        assert "truncated" in str(ei.value) and str(d) in str(ei.value)


def test_missing_weights_are_refused(tmp_path, trained):
    d = tmp_path / "noweights"
    shutil.copytree(trained["textcnn"].path, d)
    (d / "model.safetensors").unlink()
    with pytest.raises(ArtifactError, match="model.safetensors"):
        load_head(d)


@pytest.mark.parametrize("arch", ["textcnn", "bert"])
def test_sidecar_label_count_must_match_weights(tmp_path, trained, arch):
    d = tmp_path / f"labels-{arch}"
    shutil.copytree(trained[arch].path, d)
    spec = read_spec(d)
    write_spec(d, HeadSpec(**{**spec.__dict__, "labels": spec.labels + ["新车官图"],
                              "thresholds": spec.thresholds + [0.5], "enabled": spec.enabled + [True]}))
    with pytest.raises(ArtifactError) as ei:
        load_head(d)
    msg = str(ei.value)
    assert "'labels'" in msg and "tagger_head.json" in msg and "5 labels" in msg and str(d) in msg


def test_bad_thresholds_are_refused(tmp_path, trained):
    d = tmp_path / "thr"
    shutil.copytree(trained["textcnn"].path, d)
    raw = json.loads((d / "tagger_head.json").read_text(encoding="utf-8"))
    raw["thresholds"][1] = 1.5
    (d / "tagger_head.json").write_text(json.dumps(raw, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(ArtifactError, match="thresholds") as ei:
        read_spec(d)
    assert "[0, 1]" in str(ei.value)
    with pytest.raises(ArtifactError):
        load_head(d)
    with pytest.raises(ArtifactError):
        write_spec(tmp_path / "w", HeadSpec("h", "textcnn", ["a"], [-0.1], [True], 8, "v"))


def test_random_bert_head_artifact(tmp_path):
    spec = build_random_bert_head(tmp_path / "rb", ["a", "b"], TRAIN[0][:100], size="small", max_length=40)
    head = load_head(tmp_path / "rb", device="cpu")
    assert head.spec == spec and head.model.config.hidden_size == 128
    assert head.predict_proba(["开启预售", "x"]).shape == (2, 2)


def test_autocast_switch_fp32_and_bf16(tmp_path):
    build_random_bert_head(tmp_path / "rb", ["a", "b"], TRAIN[0][:100], size="small", max_length=40)
    head = load_head(tmp_path / "rb", device="cpu")
    texts = TRAIN[0][:40]
    job = head.predict_proba(texts)  # "auto": no autocast on CPU
    np.testing.assert_array_equal(head.predict_proba(texts, autocast="off"), job)
    bf16 = head.predict_proba(texts, autocast="bf16")  # what the GPU check compares, here on CPU
    assert bf16.dtype == np.float32 and not np.array_equal(bf16, job)
    np.testing.assert_allclose(bf16, job, atol=3e-2)
    assert head.autocast_dtype("auto") is None and head.autocast_dtype("bf16") == torch.bfloat16
    with pytest.raises(ValueError, match="autocast"):
        head.predict_proba(texts, autocast="fp8")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(trained):
    for arch, tol in (("textcnn", 1e-4), ("bert", 3e-2)):  # bert runs under bf16 autocast on CUDA
        texts = probe_texts() + DEV[0]
        cpu = load_head(trained[arch].path, device="cpu").predict_proba(texts)
        gpu = load_head(trained[arch].path, device="cuda").predict_proba(texts)
        np.testing.assert_allclose(gpu, cpu, atol=tol)


def test_a_small_sidecar_maps_a_checkpoints_outputs_to_tags_and_sets_thresholds(tmp_path):
    d, model, tok = _foreign_dir(tmp_path, "multi_label_classification", 3,
                                 {0: "presale", 1: "spy_photo", 2: "official"})
    (d / "tagger_head.json").write_text(json.dumps(
        {"head": "p0", "label_map": {"spy_photo": "谍照", "presale": "预售", "official": "官图"},
         "thresholds": [0.2, 0.5, 0.9]}, ensure_ascii=False), encoding="utf-8")
    head = load_head(d, device="cpu")
    assert head.spec.labels == ["预售", "谍照", "官图"] and head.spec.thresholds == [0.2, 0.5, 0.9]
    assert head.spec.head == "p0" and head.spec.arch == "bert" and head.spec.max_length == 48
    texts = ["开启预售", "路试谍照曝光", ""]
    scores = head.predict_proba(texts)
    np.testing.assert_array_equal(head.predict(texts), np.round(scores, 4) >= np.array([0.2, 0.5, 0.9]))
    (d / "tagger_head.json").write_text(json.dumps({"label_map": {"presale": "预售"}}), encoding="utf-8")
    with pytest.raises(ArtifactError, match="no entry for"):
        read_spec(d)


def test_artifact_files_are_readable_by_others(trained):
    import stat

    umask = os.umask(0)
    os.umask(umask)
    for arch in ("textcnn", "bert"):
        d = Path(trained[arch].path)
        for path in [d, *d.iterdir()]:
            mode = stat.S_IMODE(path.stat().st_mode)
            assert mode & 0o044 == 0o044 & ~umask, (path, oct(mode))
