import pytest

from finetune.config import ConfigError, ConfigParser, TrainConfig, parse_size


def test_defaults_validate_and_round_trip():
    cfg = TrainConfig().validate()
    assert cfg.base_model == "gpt2" and cfg.dataset == "mteb/tweet_sentiment_extraction"
    assert cfg.seed == 42 and cfg.test_size == 1000
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("value, expected", [("all", 0), ("ALL", 0), (0, 0), ("250", 250), (7, 7)])
def test_sizes_accept_all_and_numbers(value, expected):
    assert parse_size(value) == expected


@pytest.mark.parametrize("value", ["-1", -3, "many", 2.5])
def test_bad_sizes_are_refused(value):
    with pytest.raises(ConfigError):
        parse_size(value)


@pytest.mark.parametrize("field, value, words", [
    ("epochs", -1, "epochs"), ("epochs", 1e9, "epochs"), ("epochs", float("inf"), "epochs"),
    ("epochs", float("nan"), "epochs"), ("batch_size", -1, "batch_size"), ("learning_rate", -1e-4, "learning_rate"),
    ("validation_share", 1.5, "validation_share"), ("max_length", 2, "max_length"),
    ("precision", "fp8", "precision"), ("hub_model_id", "no-slash", "hub_model_id"), ("base_model", " ", "base_model"),
])
def test_validate_names_the_bad_setting(field, value, words):
    cfg = TrainConfig(**{field: value})
    with pytest.raises(ConfigError, match=words):
        cfg.validate()


def test_from_dict_coerces_form_strings_and_refuses_unknown_keys():
    cfg = TrainConfig.from_dict({"epochs": "2", "batch_size": "8", "train_size": "all", "hub_private": "true"})
    assert (cfg.epochs, cfg.batch_size, cfg.train_size, cfg.hub_private) == (2.0, 8, 0, True)
    with pytest.raises(ConfigError, match="unknown"):
        TrainConfig.from_dict({"epoch": 3})
    with pytest.raises(ConfigError, match="batch_size"):
        TrainConfig.from_dict({"batch_size": "eight"})


def test_every_field_is_an_option_with_help_and_default():
    parser = ConfigParser()
    help_text = " ".join(parser.format_help().split())
    for flag in ("--base-model", "--dataset", "--train-size", "--test-size", "--epochs", "--runs-dir",
                 "--learning-rate", "--grad-accum", "--early-stopping-patience", "--hub-private", "--no-group-by-length"):
        assert flag in help_text
    assert "Tweets to train on, drawn from the cleaned train split" in help_text  # the field's own help
    cfg, _ = parser.parse(["--train-size", "all", "--epochs", "1", "--no-group-by-length"])
    assert cfg.train_size == 0 and cfg.epochs == 1 and cfg.group_by_length is False
    assert parser.parse(["--train_size", "250"])[0].train_size == 250  # the dataclass spelling works too
    with pytest.raises(ConfigError, match="not a whole number"):
        parser.parse(["--train-size", "lots"])
    with pytest.raises(ConfigError, match="unknown option"):
        parser.parse(["--epochz", "2"])


def test_the_app_variables_become_the_configs_defaults(monkeypatch):
    """Read once at the entry point (core.settings), handed to TrainConfig as values."""
    from core.settings import Settings

    monkeypatch.setenv("BASE_MODEL", "/models/x")
    monkeypatch.setenv("RUNS_DIR", "/tmp/r")
    cfg = TrainConfig.from_dict({**Settings.from_env().train_overrides(), "epochs": 1})
    assert cfg.base_model == "/models/x" and cfg.runs_dir == "/tmp/r" and cfg.epochs == 1
