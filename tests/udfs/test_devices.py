"""Which device a tagging task takes (udfs/devices.py): Spark's GPU address, renumbered under
CUDA_VISIBLE_DEVICES; cuda:0 without an assignment; the CPU, with a note, when there is no CUDA."""
import pytest

from tagger.udfs.devices import choose_device, task_device


def test_the_assigned_address_is_the_cuda_ordinal():
    assert choose_device(None, ["1"], cuda_count=2).device == "cuda:1"
    assert choose_device(None, ["0"], cuda_count=2).describe() == "cuda:0 (spark gpu 0)"


def test_under_cuda_visible_devices_the_address_is_renumbered():
    # the resource manager exposed physical GPUs 2 and 3: torch sees them as cuda:0 and cuda:1
    assert choose_device(None, ["3"], cuda_count=2, visible="2,3").device == "cuda:1"
    assert choose_device(None, ["2"], cuda_count=2, visible="2, 3").device == "cuda:0"


def test_no_assignment_takes_cuda0_or_the_cpu():
    assert choose_device(None, [], cuda_count=4).device == "cuda:0"
    assert choose_device(None, [], cuda_count=0).describe() == "cpu"


def test_an_assignment_without_cuda_falls_back_to_the_cpu_with_a_note():
    choice = choose_device(None, ["0", "1"], cuda_count=0)
    assert (choice.device, choice.addresses) == ("cpu", ("0", "1"))
    assert choice.describe() == "cpu (spark gpu 0,1; no CUDA in this Python: tagging on CPU)"


def test_an_address_no_device_matches_is_an_error():
    with pytest.raises(ValueError, match="discovery script"):
        choose_device(None, ["5"], cuda_count=2)


def test_a_requested_device_wins():
    assert choose_device("cpu", ["1"], cuda_count=2).device == "cpu"


def test_outside_a_spark_task_there_is_no_assignment():
    import torch

    expected = "cuda:0" if torch.cuda.is_available() else "cpu"
    assert task_device().device == expected
