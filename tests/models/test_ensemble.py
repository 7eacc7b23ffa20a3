"""Ensemble heads: intersection / union / mean of two member heads trained on the same labels."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import json
import shutil

import numpy as np
import pytest

from tagger.models.spec import ArtifactError, read_spec
from tagger.models.loading import load_head
from tagger.models.ensemble import EnsembleHead, combine_scores, rescale, write_ensemble
from tagger.models.training import train_head
from tiny_data import DEV, LABELS, QUIET, TRAIN, make_data

TEST = make_data(300, 3)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def members(tmp_path_factory):
    """Two textcnn heads that disagree on some items: one barely trained, one trained longer."""
    base = tmp_path_factory.mktemp("ensemble")
    dirs = []
    for name, epochs, seed in (("weak", 1, 3), ("strong", 8, 4)):
        train_head(arch="textcnn", head=name, labels=LABELS, train_texts=TRAIN[0], train_labels=TRAIN[1],
                   dev_texts=DEV[0], dev_labels=DEV[1], out_dir=str(base / "members" / name), epochs=epochs,
                   max_length=64, seed=seed, patience=epochs, log=QUIET)
        dirs.append(base / "members" / name)
    return base, dirs


def test_rescale_maps_each_threshold_to_one_half():
    r = rescale(np.array([[0.2, 0.6, 0.9], [0.0, 0.3, 1.0]]), [0.2, 0.6, 0.9])
    assert r[0] == pytest.approx([0.5, 0.5, 0.5])
    assert r[1] == pytest.approx([0.0, 0.49 * 0.3 / 0.6, 1.0])
    assert np.all(np.diff(rescale(np.linspace(0, 1, 11)[:, None], [0.3]), axis=0) > 0)  # monotone


@pytest.mark.parametrize("combine, reduce", [("intersection", np.logical_and), ("union", np.logical_or)])
def test_intersection_and_union_reproduce_the_members_decisions(members, combine, reduce):
    base, dirs = members
    out = base / combine
    write_ensemble(out, dirs, combine, head=f"p0_{combine}")
    ensemble = load_head(out)
    assert isinstance(ensemble, EnsembleHead)
    weak, strong = (load_head(d) for d in dirs)
    expected = reduce(weak.predict(TEST[0]), strong.predict(TEST[0]))
    assert np.array_equal(ensemble.predict(TEST[0]), expected)
    # the members really disagree somewhere, or this test proves nothing
    assert not np.array_equal(weak.predict(TEST[0]), strong.predict(TEST[0]))


def test_mean_lies_between_intersection_and_union(members):
    base, dirs = members
    heads = [load_head(d) for d in dirs]
    scores = [h.predict_proba(TEST[0]) for h in heads]
    thresholds = [h.spec.thresholds for h in heads]
    lo, mid, hi = (combine_scores(scores, thresholds, c) for c in ("intersection", "mean", "union"))
    assert np.all(lo <= mid + 1e-6) and np.all(mid <= hi + 1e-6)
    write_ensemble(base / "mean", dirs, "mean")
    assert np.allclose(load_head(base / "mean").predict_proba(TEST[0]), mid, atol=1e-6)


def test_an_ensemble_directory_can_be_moved_with_its_members(members, tmp_path):
    base, dirs = members
    inside = tmp_path / "ens"
    for d in dirs:
        shutil.copytree(d, inside / "members" / d.name)
    write_ensemble(inside, [inside / "members" / d.name for d in dirs], "intersection", head="p0")
    assert read_spec(inside).extra["members"] == ["members/weak", "members/strong"]
    moved = tmp_path / "moved"
    shutil.move(str(inside), moved)
    weak, strong = (load_head(d) for d in dirs)
    assert np.array_equal(load_head(moved).predict(TEST[0]), weak.predict(TEST[0]) & strong.predict(TEST[0]))


def test_members_with_other_labels_are_refused(members, tmp_path):
    base, dirs = members
    other = tmp_path / "other"
    shutil.copytree(dirs[1], other)
    sidecar = json.loads((other / "tagger_head.json").read_text(encoding="utf-8"))
    sidecar["labels"] = list(reversed(sidecar["labels"]))
    (other / "tagger_head.json").write_text(json.dumps(sidecar, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(ArtifactError, match="same label file"):
        write_ensemble(tmp_path / "bad", [dirs[0], other], "union")


def test_an_unknown_combine_is_refused(members, tmp_path):
    base, dirs = members
    write_ensemble(tmp_path / "ens", dirs, "union")
    sidecar_path = tmp_path / "ens" / "tagger_head.json"
    sidecar = json.loads(sidecar_path.read_text(encoding="utf-8"))
    sidecar["combine"] = "vote"
    sidecar_path.write_text(json.dumps(sidecar), encoding="utf-8")
    with pytest.raises(ArtifactError, match="combine"):
        load_head(tmp_path / "ens")


def test_recalibrating_a_member_changes_the_ensembles_version(members, tmp_path):
    from tagger.models.spec import artifact_version

    copies = _copy_members(members[1], tmp_path / "ens")
    write_ensemble(tmp_path / "ens", copies, "intersection")
    before = artifact_version(tmp_path / "ens")
    _edit(copies[0], lambda s: s["thresholds"].__setitem__(0, 0.9 if s["thresholds"][0] != 0.9 else 0.8))
    assert artifact_version(tmp_path / "ens") != before


def _copy_members(dirs, ensemble_dir):
    """Copies of the member heads below <ensemble_dir>/members/, in order."""
    copies = [ensemble_dir / "members" / d.name for d in dirs]
    for d, copy in zip(dirs, copies):
        shutil.copytree(d, copy)
    return copies


def _edit(path, change):
    sidecar = json.loads((path / "tagger_head.json").read_text(encoding="utf-8"))
    change(sidecar)
    (path / "tagger_head.json").write_text(json.dumps(sidecar, ensure_ascii=False), encoding="utf-8")


def test_a_label_a_member_switched_off_is_that_members_no(members, tmp_path):
    copies = _copy_members(members[1], tmp_path / "ens")
    _edit(copies[1], lambda s: s["enabled"].__setitem__(1, False))  # the strong member says no to label 1
    weak, strong = (load_head(d) for d in copies)
    assert weak.predict(TEST[0])[:, 1].any()  # ... where the weak one says yes on some items
    write_ensemble(tmp_path / "ens", copies, "intersection")
    write_ensemble(tmp_path / "uni", copies, "union")
    assert not load_head(tmp_path / "ens").predict(TEST[0])[:, 1].any()
    assert np.array_equal(load_head(tmp_path / "uni").predict(TEST[0]), weak.predict(TEST[0]) | strong.predict(TEST[0]))


def test_a_member_with_a_decision_block_or_the_ensemble_dir_itself_is_refused(members, tmp_path):
    base, dirs = members
    shutil.copytree(dirs[0], tmp_path / "a")
    _edit(tmp_path / "a", lambda s: s.update(decision={"top_k": 1}))
    with pytest.raises(ArtifactError, match="decision block"):
        write_ensemble(tmp_path / "ens", [tmp_path / "a", dirs[1]], "union")
    shutil.copytree(dirs[1], tmp_path / "b")
    with pytest.raises(ArtifactError, match="already holds a head"):
        write_ensemble(tmp_path / "b", [dirs[0], tmp_path / "b"], "union")
    assert read_spec(tmp_path / "b").arch == "textcnn"  # the member's sidecar is untouched


def test_editing_combine_changes_the_version(members, tmp_path):
    from tagger.models.spec import artifact_version

    base, dirs = members
    write_ensemble(tmp_path / "ens", dirs, "intersection")
    before = artifact_version(tmp_path / "ens")
    _edit(tmp_path / "ens", lambda s: s.update(combine="union"))
    assert artifact_version(tmp_path / "ens") != before
