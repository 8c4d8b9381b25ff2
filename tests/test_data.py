import json

import pytest

from conftest import write_jsonl
from finetune.config import TrainConfig
from finetune.data import fold, load_splits, prepare, tokenize
from core.labels import label_id
from core.errors import UserError


def row(text, label, i=[0]):
    i[0] += 1
    return {"id": str(i[0]), "text": text, "label": label}


@pytest.fixture
def crafted(tmp_path):
    """A dataset with every flaw the real one has, in known numbers."""
    train = [row(f"tweet number {i} is here", i % 3) for i in range(40)]
    train += [
        row("", 1), row("   \t ", 2),                           # 2 empty
        row("I LOVE   this", 2), row("i love this", 2),          # a duplicate, same label
        row("Meh  whatever", 1), row("meh whatever", 0),         # a duplicate, conflicting label
        row("meh WHATEVER ", 1),                                  # a third copy of that text
        row("the test tweet", 0),                                 # leaks into test
        row("odd label", "sarcastic"), row("none label", None),  # 2 unknown labels
        row("string label", "Positive"),                          # a valid string label
    ]
    test = [row("The test tweet", 0), row("another test tweet", 1), row("third test tweet", 2), row("", 1)]
    root = tmp_path / "crafted"
    write_jsonl(root / "train.jsonl", train)
    write_jsonl(root / "test.jsonl", test)
    return root


def test_fold_and_labels():
    assert fold("  I  LOVE\tthis \n") == "i love this"
    assert [label_id(v) for v in (0, 2, "neutral", " Positive ", "1", 3, "x", None, True, 1.0)] == \
        [0, 2, 1, 2, 1, None, None, None, None, 1]


def test_cleaning_leakage_and_counts(crafted):
    splits, report = prepare(TrainConfig(dataset=str(crafted), train_size=0, test_size=0, validation_share=0.1))
    assert report.rows_in == {"train": 51, "test": 4}
    assert report.dropped_empty == 3                   # 2 in train, 1 in test
    assert report.dropped_unknown_label == 2
    assert report.train_test_overlap == 1
    assert report.duplicates_removed == 3              # "i love this" once, "meh whatever" twice
    assert report.conflicting_labels == 1              # one text came with two labels
    train, val, test = (set(map(fold, splits[s]["text"])) for s in ("train", "validation", "test"))
    assert not train & test and not train & val and not val & test
    assert "the test tweet" not in train | val
    assert report.sizes == {"train": len(splits["train"]), "validation": len(splits["validation"]), "test": 3}
    assert len(splits["train"]) + len(splits["validation"]) == 51 - 2 - 2 - 1 - 3
    assert sum(report.label_counts["train"].values()) == len(splits["train"])
    json.dumps(report.to_dict())  # what data_report.json holds


def test_subsets_are_reproducible_and_sized(tiny_dataset):
    cfg = TrainConfig(dataset=str(tiny_dataset), train_size=100, test_size=20, validation_share=0.2, seed=7)
    a, _ = prepare(cfg)
    b, _ = prepare(cfg)
    assert list(a["train"]["text"]) == list(b["train"]["text"]) and list(a["test"]["text"]) == list(b["test"]["text"])
    assert (len(a["train"]), len(a["validation"]), len(a["test"])) == (100, 20, 20)
    c, _ = prepare(TrainConfig(dataset=str(tiny_dataset), train_size=100, test_size=20, validation_share=0.2, seed=8))
    assert list(c["train"]["text"]) != list(a["train"]["text"])


def test_corrections_join_train_only_and_deduplicated(tiny_dataset):
    cfg = TrainConfig(dataset=str(tiny_dataset), train_size=50, test_size=20)
    base, _ = prepare(cfg)
    extra = [("A brand new corrected tweet", 2), ("a brand NEW corrected tweet", 2), (base["test"]["text"][0], 1)]
    splits, report = prepare(cfg, extra_train=extra)
    assert report.corrections_added == 1
    assert "A brand new corrected tweet" in splits["train"]["text"]
    assert "A brand new corrected tweet" not in list(splits["validation"]["text"]) + list(splits["test"]["text"])


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_single_files_with_string_labels_and_own_columns(tmp_path, suffix):
    import pandas as pd

    df = pd.DataFrame({"tweet": [f"text {i}" for i in range(50)],
                       "sentiment": ["negative", "neutral", "positive", "Positive", "NEUTRAL"] * 10})
    path = tmp_path / f"data{suffix}"
    {".csv": lambda: df.to_csv(path, index=False), ".jsonl": lambda: df.to_json(path, orient="records", lines=True),
     ".parquet": lambda: df.to_parquet(path)}[suffix]()
    splits, report = prepare(TrainConfig(dataset=str(path), text_column="tweet", label_column="sentiment",
                                         train_size=0, test_size=0))
    assert report.dropped_unknown_label == 0
    assert len(splits["test"]) == 10 and len(splits["train"]) + len(splits["validation"]) == 40


def test_bad_datasets_say_what_to_do(tmp_path, tiny_dataset):
    with pytest.raises(UserError, match="no column 'tweet'"):
        prepare(TrainConfig(dataset=str(tiny_dataset), text_column="tweet"))
    with pytest.raises(UserError, match="does not exist"):
        load_splits(str(tmp_path / "missing" / "data.csv"))
    empty = tmp_path / "empty"
    write_jsonl(empty / "train.jsonl", [row("", 1), row(" ", 0)])
    write_jsonl(empty / "test.jsonl", [row("fine", 1)])
    with pytest.raises(UserError, match="no usable training rows"):
        prepare(TrainConfig(dataset=str(empty)))


def test_hub_id_offline_gives_one_line_hint():
    with pytest.raises(UserError, match="local folder") as info:
        load_splits("someone/not-a-dataset-xyz")
    assert "\n" not in str(info.value)


def test_tokenize_pads_nothing_and_truncates(tiny_dataset, tiny_model):
    from core.model import load_tokenizer

    splits, _ = prepare(TrainConfig(dataset=str(tiny_dataset), train_size=30, test_size=10))
    tok = tokenize(splits, load_tokenizer(str(tiny_model)), max_length=8)
    lengths = [len(ids) for ids in tok["train"]["input_ids"]]
    assert max(lengths) <= 8 and len(set(lengths)) > 1       # no padding to a common length
    assert list(tok["train"]["length"]) == lengths
