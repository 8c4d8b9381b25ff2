"""The one reader of the environment: every variable the app and the command lines understand.

    settings = Settings.from_env()        # once, at an entry point; then passed down

Each field names its variable. The token is kept out of `repr`, so a settings object can be logged.
`quiet_libraries()` is the one place that tells the Hugging Face libraries to keep their progress
bars and per-load reports to themselves (our own log says what happens).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, fields

# variable → field; "" (unset) leaves the field's default
VARIABLES = {
    "HF_TOKEN": "hf_token", "BASE_MODEL": "base_model", "DATASET": "dataset", "RUNS_DIR": "runs_dir",
    "DATA_DIR": "data_dir", "HUB_MODEL_ID": "hub_model_id", "HUB_DATASET_ID": "hub_dataset_id",
    "THREADS": "threads", "CPU_CORES": "cpu_cores", "SERVING_PRECISION": "serving_precision",
    "ADMIN_USERS": "admin_users", "SPACE_ID": "space_id", "GRADIO_SERVER_NAME": "host",
    "GRADIO_SERVER_PORT": "port", "RANK": "rank", "HUB_PRIVATE": "hub_private", "PUBLIC_RETRAIN": "public_retrain",
    "RETRAIN_COOLDOWN_S": "retrain_cooldown_s", "KEEP_RUNS": "keep_runs",
}
TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")



@dataclass(frozen=True)
class Settings:
    hf_token: str = field(default="", repr=False)  # write access for pushes; never printed
    base_model: str = ""            # "" = TrainConfig's default
    dataset: str = ""
    runs_dir: str = ""
    data_dir: str = ""              # where the web may name dataset files ("" = <runs_dir>/_data)
    hub_model_id: str = ""
    hub_dataset_id: str = ""        # people's corrections are copied to this Hub dataset
    threads: str = ""
    cpu_cores: str = ""             # set on Spaces: the cores this container is granted
    serving_precision: str = ""     # one of inference.policy.PRECISIONS; "" = auto
    admin_users: str = ""           # comma-separated Hub user names who may retrain
    space_id: str = ""              # set on a Space (owner/name)
    hub_private: str = ""           # "1": HUB_MODEL_ID is created private (an existing repo keeps its own)
    public_retrain: str = "1"       # "0": Retrain is for ADMIN_USERS only; else visitors may, with the defaults
    retrain_cooldown_s: str = "600"  # at most one visitor's Retrain start this often
    keep_runs: str = "5"            # the newest runs that keep their ONNX exports and resumable checkpoints
    host: str = "0.0.0.0"
    port: str = "7860"
    rank: str = "0"                 # torchrun / accelerate: only rank 0 writes and prints

    @classmethod
    def from_env(cls, environ=None) -> "Settings":
        environ = os.environ if environ is None else environ
        return cls(**{name: environ[var].strip() for var, name in VARIABLES.items() if environ.get(var, "").strip()})

    @property
    def admins(self) -> frozenset[str]:
        return frozenset(u.strip() for u in self.admin_users.split(",") if u.strip())

    @property
    def on_space(self) -> bool:
        return bool(self.space_id)

    @property
    def is_main_process(self) -> bool:
        return self.rank in ("", "0")

    @property
    def retrain_public(self) -> bool:
        return _flag("PUBLIC_RETRAIN", self.public_retrain)

    @property
    def cooldown_s(self) -> float:
        return _number("RETRAIN_COOLDOWN_S", self.retrain_cooldown_s, float)

    @property
    def runs_kept(self) -> int:
        return max(1, _number("KEEP_RUNS", self.keep_runs, int))

    def train_overrides(self) -> dict:
        """The TrainConfig fields the environment sets (BASE_MODEL, DATASET, RUNS_DIR, HUB_MODEL_ID,
        HUB_PRIVATE, THREADS)."""
        values = {name: getattr(self, name) for name in ("base_model", "dataset", "runs_dir", "hub_model_id", "threads")
                  if getattr(self, name)}
        return {**values, "hub_private": _flag("HUB_PRIVATE", self.hub_private)} if self.hub_private else values


def _flag(variable: str, value: str) -> bool:
    if value.strip().lower() not in TRUE + FALSE:
        raise ValueError(f"{variable} must be 1 or 0 (true/false), got {value!r}")
    return value.strip().lower() in TRUE


def _number(variable: str, value: str, kind: type):
    try:
        number = kind(value)
    except ValueError:
        raise ValueError(f"{variable} must be a {kind.__name__} number, got {value!r}") from None
    if number < 0:
        raise ValueError(f"{variable} must be >= 0, got {value!r}")
    return number


def token() -> str:
    """HF_TOKEN as the environment has it now: for the few places that must know it without being
    handed a Settings (scrubbing a message deep inside a library call)."""
    return os.environ.get("HF_TOKEN", "").strip()


def quiet_libraries() -> None:
    """No progress bars or per-load reports from transformers and datasets."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")


assert set(VARIABLES.values()) == {f.name for f in fields(Settings)}, "every field names its variable"
