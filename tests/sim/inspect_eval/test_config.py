"""The `runaway` sandbox's configuration: defaults, a YAML file, and bad input named."""

from __future__ import annotations

import pytest

pytest.importorskip("inspect_ai", reason="the optional extra: pip install -e '.[inspect]'")

from sim.inspect_eval.config import InspectConfigError, RunawaySandboxConfig, load_config  # noqa: E402


def test_no_config_means_every_default():
    cfg = load_config(None)
    assert cfg == RunawaySandboxConfig()
    assert (cfg.backend, cfg.web, cfg.guards, cfg.run_dir) == ("docker", True, True, "runs/inspect")


def test_a_yaml_file_gives_the_same_fields(tmp_path):
    f = tmp_path / "runaway.yaml"
    f.write_text("profile: ci\nweb: false\npolicy: my.yaml\nmetrics_port: null\n")
    assert load_config(str(f)) == RunawaySandboxConfig(profile="ci", web=False, policy="my.yaml", metrics_port=None)


@pytest.mark.parametrize("text, field", [("profil: ci\n", "profil"), ("web: maybe\n", "web"),
                                         ("max_duration_s: -1\n", "max_duration_s")])
def test_a_bad_field_is_named_with_its_file(tmp_path, text, field):
    f = tmp_path / "runaway.yaml"
    f.write_text(text)
    with pytest.raises(InspectConfigError) as e:
        load_config(str(f))
    assert str(e.value).startswith(f"{f}: {field}: ") and "\n" not in str(e.value)


def test_a_file_that_is_not_yaml_says_where(tmp_path):
    f = tmp_path / "runaway.yaml"
    f.write_text("web: [\n")
    with pytest.raises(InspectConfigError, match=r"runaway\.yaml:2: not valid YAML"):
        load_config(str(f))
