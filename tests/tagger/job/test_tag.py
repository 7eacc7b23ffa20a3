"""build_spec (tagger/job/tag.py) at job start: a head directory that is not there names the config
key that fixes it."""
import pytest

from conftest import write_config
from tagger.config import ConfigError, load_config
from tagger.job.tag import build_spec


def test_a_missing_head_directory_names_its_config_key(tmp_path):
    def edit(raw):
        raw["heads"][0]["path"] = "no_such_models/gate"  # relative: under the config's folder
    cfg = load_config(write_config(tmp_path, edit=edit))
    with pytest.raises(ConfigError, match=r"key 'heads\[0\]\.path' \(head gate\): .*no_such_models/gate") as exc:
        build_spec(cfg, {}, cfg.tables.tag_dim, 1)
    assert "tagger train --head gate" in str(exc.value) and str(tmp_path) in str(exc.value)


def test_a_label_switched_on_in_two_heads_under_one_parent_is_refused(cfg, trained, tmp_path):
    """A second head under p0's parent (a rare-label binary head, say) may emit only labels p0 has
    switched off: otherwise an item would carry the tag twice. Break: drop the `emitted` check in
    build_spec."""
    import dataclasses
    import json
    import shutil

    from tagger.config import HeadConf
    from tagger.lifecycle.gate import synthetic_tag_index
    from tagger.models.spec import read_spec
    from tagger.rules_file import load_rules

    p0 = next(h for h in cfg.heads if h.name == "p0")
    rare = tmp_path / "p0_rare"
    shutil.copytree(p0.path, rare)
    with_rare = dataclasses.replace(cfg, heads=(*cfg.heads, HeadConf("p0_rare", str(rare), p0.parent, "gate")))
    index = synthetic_tag_index(cfg, load_rules(cfg.rules_path), [(h, read_spec(h.path)) for h in with_rare.heads])
    with pytest.raises(ConfigError, match=r"switched on in both head 'p0' and head 'p0_rare'"):
        build_spec(with_rare, index, cfg.tables.tag_dim, 1)

    sidecar = rare / "tagger_head.json"  # the copy keeps only what p0 switched off: no overlap
    spec = json.loads(sidecar.read_text(encoding="utf-8"))
    spec["enabled"] = [not on for on in read_spec(p0.path).enabled]
    sidecar.write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
    built, versions, _ = build_spec(with_rare, index, cfg.tables.tag_dim, 1)
    assert "p0_rare=" in versions and len(built.heads) == len(cfg.heads) + 1
