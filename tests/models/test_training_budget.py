"""What keeps the demo's training short and steady: the stratified cap on training examples
(cap_examples) and the torch thread choice for training (training_threads, torch_threads)."""
import numpy as np
import pytest
import torch

from tagger.models.training import cap_examples, torch_threads, training_threads


def _labels(n_common: int, n_rare: int, n_none: int) -> list[list[str]]:
    return [["common"]] * n_common + [["rare", "common"]] * 3 + [["rare"]] * (n_rare - 3) + [[]] * n_none


def test_cap_keeps_every_positive_of_a_rare_label_and_the_shares_of_the_rest():
    lists = _labels(n_common=3000, n_rare=40, n_none=7000)
    keep = cap_examples(lists, ["common", "rare"], cap=1000, seed=0)
    assert len(keep) == 1000 and len(set(keep.tolist())) == 1000 and (np.diff(keep) > 0).all()
    picked = [lists[i] for i in keep]
    assert sum("rare" in x for x in picked) == 40  # all of them: 40 < the quota, min(500, 1000 // (2 * 2))
    common = sum("common" in x for x in picked) / 1000
    assert 0.22 <= common <= 0.38  # ~30% as in the full set
    assert np.array_equal(keep, cap_examples(lists, ["common", "rare"], cap=1000, seed=0))
    assert not np.array_equal(keep, cap_examples(lists, ["common", "rare"], cap=1000, seed=1))


def test_cap_tops_a_rare_label_up_to_its_quota_only():
    lists = _labels(n_common=100, n_rare=900, n_none=9000)
    keep = cap_examples(lists, ["common", "rare"], cap=400, seed=0)
    rare = sum("rare" in lists[i] for i in keep)
    assert 100 <= rare < 160  # the quota (400 // 4) plus its ~9% share of the uniform rest
    few = cap_examples(lists, ["common", "rare"], cap=400, seed=0, min_positives=20)
    assert 20 <= sum("rare" in lists[i] for i in few) < 70  # a quota of 20, then the uniform rest
    one = cap_examples([["a"]] * 1500 + [[]] * 8500, ["a"], cap=5000, seed=0)
    assert 0.13 <= len([i for i in one if i < 1500]) / 5000 <= 0.17  # 750 > 500 expected: no top-up, 15% kept


def test_cap_changes_nothing_under_the_cap_and_refuses_a_zero_cap():
    assert cap_examples([["a"], []], ["a"], cap=5).tolist() == [0, 1]
    with pytest.raises(ValueError):
        cap_examples([["a"], []], ["a"], cap=0)


def test_training_threads_stay_at_one_on_a_small_machine_and_the_setting_comes_back():
    assert training_threads(cores=2) == 1 and training_threads(cores=1) == 1 and training_threads() >= 1
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), torch_threads(1):
        raise RuntimeError("training failed")
    assert torch.get_num_threads() == before
