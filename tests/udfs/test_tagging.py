"""The worker cache key: a reused Python worker must never tag with another run's inputs."""
from dataclasses import replace

from tagger.config import CONF_DIR, load_config
from tagger.rules_file import load_rules
from tagger.udfs.tagging import TaggerSpec


def _spec(**changes) -> TaggerSpec:
    cfg = load_config()
    spec = TaggerSpec(heads=cfg.heads, gate_head=cfg.gate_head,
                      rules=load_rules(CONF_DIR / "autoshow_rules.yaml"),
                      tag_index={"内容标签/新车资讯": (10001, "新车资讯")}, model_version="gate=v1;p0=v1")
    return replace(spec, **changes)


def test_fingerprint_changes_with_everything_a_cached_tagger_reads():
    base = _spec()
    assert _spec().fingerprint == base.fingerprint
    for changed in (_spec(tag_index={"内容标签/新车资讯": (20002, "新车资讯")}),
                    _spec(model_version="gate=v2;p0=v1"), _spec(batch_size=128), _spec(torch_threads=4)):
        assert changed.fingerprint != base.fingerprint


def test_a_reused_worker_sets_the_specs_torch_threads_again(spark, cfg, trained):
    """A worker keeps its Taggers between tasks; another spec may have changed torch's threads
    since (tagger ablation runs 1 task x 2 threads between runs of 2 tasks x 1 thread)."""
    import torch

    from tagger.job.tag import build_spec
    from tagger.measure.inputs import bench_inputs
    from tagger.udfs.tagging import _WORKER_TAGGERS, get_tagger

    before = torch.get_num_threads()
    spec = build_spec(cfg, bench_inputs(spark, cfg, 20)[1], "generated", 1)[0]
    try:
        first = get_tagger(spec)
        torch.set_num_threads(2)
        assert get_tagger(spec) is first  # cached: the models are not loaded again
        assert torch.get_num_threads() == 1
    finally:
        _WORKER_TAGGERS.pop(spec.fingerprint, None)
        torch.set_num_threads(before)
