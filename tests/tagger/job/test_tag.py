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
