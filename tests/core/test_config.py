from dataclasses import dataclass, field
from typing import Literal

import pytest

from tether.core.config import (
    ConfigError,
    check,
    field_docs,
    from_dict,
    help_text,
    override,
    parse_args,
    preset_name,
    to_dict,
)


@dataclass(frozen=True)
class LossConfig:
    clip_low: float = 0.2
    """Lower PPO clip epsilon."""
    clip_high: float = 0.28
    """Upper clip epsilon (clip-higher)."""
    mode: Literal["token_mean_global", "seq_mean_token_mean"] = "token_mean_global"
    """Aggregation mode."""

    def __post_init__(self):
        check(self.clip_low <= self.clip_high, "loss.clip_low", self.clip_low, f"<= clip_high={self.clip_high}")


@dataclass(frozen=True)
class RunConfig:
    dir: str = "runs/x"
    """Run directory."""
    seed: int = 0
    """Seed."""
    json: bool = False
    """Print JSON."""
    budget: float | None = None
    """Optional budget."""
    ks: tuple[int, ...] = (1, 8)
    """k values for pass@k."""


@dataclass(frozen=True)
class TopConfig:
    loss: LossConfig = field(default_factory=LossConfig)
    """Loss section."""
    run: RunConfig = field(default_factory=RunConfig)
    """Run section."""
    group_size: int = 8
    """Completions per prompt."""

    def __post_init__(self):
        check(self.group_size >= 2, "group_size", self.group_size, "an int >= 2 (advantages need a group)")


def test_field_docs():
    assert field_docs(LossConfig)["clip_high"] == "Upper clip epsilon (clip-higher)."


def test_parse_dotted_and_bool_and_hyphens():
    cfg = parse_args(TopConfig, ["--loss.clip_high", "0.3", "--run.json", "--group-size=4", "--run.ks", "1,4,16"])
    assert cfg.loss.clip_high == 0.3 and cfg.run.json is True and cfg.group_size == 4 and cfg.run.ks == (1, 4, 16)
    assert parse_args(TopConfig, ["--run.no-json"]).run.json is False
    assert parse_args(TopConfig, ["--run.budget", "none"]).run.budget is None
    assert parse_args(TopConfig, ["--run.budget", "0.5"]).run.budget == 0.5


def test_unknown_key_names_field_and_suggests():
    with pytest.raises(ConfigError, match="unknown config field 'loss.clip_hgh'; did you mean 'loss.clip_high'"):
        parse_args(TopConfig, ["--loss.clip_hgh", "0.3"])


@pytest.mark.parametrize("argv,match", [
    (["--loss.clip_high", "abc"], r"'loss.clip_high': got 'abc', expected a float"),
    (["--group_size", "1.5"], r"'group_size': got '1.5', expected an int"),
    (["--loss.mode", "mean"], r"'loss.mode': got 'mean', expected one of 'token_mean_global'"),
    (["--group_size", "1"], r"'group_size': got 1, expected an int >= 2"),
    (["--loss.clip_low", "0.5"], r"'loss.clip_low': got 0.5, expected <= clip_high=0.28"),
    (["--loss.clip_high"], r"needs a value"),
])
def test_bad_values_fail_naming_field_value_and_allowed(argv, match):
    with pytest.raises(ConfigError, match=match):
        parse_args(TopConfig, argv)


def test_json_round_trip_exact():
    cfg = override(TopConfig(), {"loss.clip_high": 0.4, "run.ks": "2,3", "run.budget": "1e-3"})
    assert from_dict(TopConfig, to_dict(cfg)) == cfg
    with pytest.raises(ConfigError, match="unknown config field 'run.sed'"):
        from_dict(TopConfig, {"run": {"sed": 1}})


def test_presets_then_overrides():
    presets = {"small": lambda: TopConfig(group_size=4)}
    cfg = parse_args(TopConfig, ["--preset", "small", "--loss.clip_high", "0.5"], presets=presets)
    assert cfg.group_size == 4 and cfg.loss.clip_high == 0.5
    with pytest.raises(ConfigError, match="unknown preset 'big'; expected one of \\['small'\\]"):
        parse_args(TopConfig, ["--preset", "big"], presets=presets)


def test_help_from_docstrings():
    text = help_text(TopConfig, prog="tether x")
    assert "--loss.clip-high" in text and "Upper clip epsilon (clip-higher)." in text and "default: 0.28" in text


def test_help_spells_flags_with_hyphens_and_the_parser_takes_both_spellings():
    text = help_text(TopConfig, prog="tether x", aliases={"high": "loss.clip_high", "group_sz": "group_size"})
    flags = [line.split()[0] for line in text.splitlines() if line.startswith("  --")]
    assert "--group-size" in flags and "--loss.clip-high" in flags and not any("_" in f for f in flags)
    assert "(or --group-sz)" in text
    hyphens = parse_args(TopConfig, ["--group-size", "4", "--loss.clip-high", "0.3", "--run.no-json"])
    underscores = parse_args(TopConfig, ["--group_size", "4", "--loss.clip_high", "0.3", "--run.no_json"])
    assert hyphens == underscores == TopConfig(loss=LossConfig(clip_high=0.3), group_size=4)


@dataclass(frozen=True)
class PresetConfig:
    preset: str = ""
    """Name of the preset this config started from."""
    group_size: int = 8
    """Completions per prompt."""


PRESETS = {"small": lambda: PresetConfig(preset="small", group_size=4)}


def test_help_with_a_preset_shows_its_defaults_and_lists_preset_once():
    plain = help_text(PresetConfig, prog="tether x", presets=PRESETS)
    text = help_text(PresetConfig, prog="tether x", presets=PRESETS, preset="small")
    assert "[an int; default: 8]" in plain and "[an int; default: 4]" in text
    assert "defaults below are those of --preset small" in text
    for t in (plain, text):  # the `preset` field only records the choice: `--preset NAME` is the one flag
        assert [line for line in t.splitlines() if line.startswith("  --preset")] == [
            "  --preset NAME      one of: small (other flags override it)"]


def test_preset_name_finds_validates_or_is_empty():
    assert preset_name(["--group-size", "4", "--preset", "small", "--help"], PRESETS) == "small"
    assert preset_name(["--help"], PRESETS) == "" and preset_name(["--preset", "small"], None) == ""
    with pytest.raises(ConfigError, match="unknown preset 'big'"):
        preset_name(["--preset", "big", "--help"], PRESETS)


def test_positional_help_uses_the_metavar_and_is_not_a_comma_separated_list():
    @dataclass(frozen=True)
    class Spec:
        specs: tuple[str, ...] = field(default=(), metadata={"metavar": "SPEC.toml"})
        """The spec file."""
        runs: tuple[str, ...] = ()
        """Other runs."""

    text = help_text(Spec, prog="tether s", positional="specs")
    assert text.startswith("usage: tether s SPEC.toml [--field VALUE ...]")
    assert "  SPEC.toml (positional)\n      The spec file. [a str per argument]" in text
    assert "--runs\n      Other runs. [a comma-separated list of a str" in text  # a flag's tuple is one value
    assert help_text(Spec, prog="tether s", positional="runs").startswith("usage: tether s RUNS... ")


def test_positional_arguments_are_kept_whole_even_with_commas():
    @dataclass(frozen=True)
    class Runs:
        runs: tuple[str, ...] = ()
        """Run directories."""
        keys: tuple[str, ...] = ()
        """Keys."""

    cfg = parse_args(Runs, ["runs/method=qam,beta=1.0", "runs/b", "--keys", "a/b,c/d"], positional="runs")
    assert cfg.runs == ("runs/method=qam,beta=1.0", "runs/b") and cfg.keys == ("a/b", "c/d")
