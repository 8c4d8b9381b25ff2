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
    splits, report = prepare(TrainConfig(dataset=str(crafted), train_size=0, test_size=0, validation_share=0.1,
                                         drop_near_duplicates=False))  # exact counts: near-copies tested apart
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


def test_a_correction_of_a_training_row_relabels_it_and_suspects_are_counted(tiny_dataset):
    cfg = TrainConfig(dataset=str(tiny_dataset), train_size=50, test_size=20)
    base, _ = prepare(cfg)
    text, label = base["train"]["text"][0], base["train"]["label"][0]
    val_text, val_label = base["validation"]["text"][0], base["validation"]["label"][0]
    extra = [(text.upper(), (label + 1) % 3), (val_text, (val_label + 2) % 3), (val_text, val_label)]
    splits, report = prepare(cfg, extra_train=extra, suspected={fold(text), "not a training row"})
    rows = dict(zip(splits["train"]["text"], splits["train"]["label"]))
    assert rows[text] == (label + 1) % 3 and len(splits["train"]) == len(base["train"])  # relabelled, not added
    assert dict(zip(splits["validation"]["text"], splits["validation"]["label"]))[val_text] == val_label  # latest wins
    assert report.relabelled_by_corrections == 1 and report.corrections_added == 0
    assert report.suspected_label_errors == 1
    assert "relabelled 1" in report.summary() and "not reviewed yet: 1 of the training rows" in report.summary()


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
    assert "upload a CSV" in str(info.value) and "set DATASET" in str(info.value)  # what to do, offline


def test_tokenize_pads_nothing_and_truncates(tiny_dataset, tiny_model):
    from core.model import load_tokenizer

    splits, _ = prepare(TrainConfig(dataset=str(tiny_dataset), train_size=30, test_size=10))
    tok = tokenize(splits, load_tokenizer(str(tiny_model)), max_length=8)
    lengths = [len(ids) for ids in tok["train"]["input_ids"]]
    assert max(lengths) <= 8 and len(set(lengths)) > 1       # no padding to a common length
    assert list(tok["train"]["length"]) == lengths


# --- your own file: encodings, columns, label schemes, splitting, preview -----------------------------
from core.labels import label_mapper  # noqa: E402
from finetune.data import MIN_ROWS_SINGLE_FILE, preview, text_encoding  # noqa: E402

ACCENTED = ["café très bon", "naïve über größe", "déjà vu à la plage", "señor piñata", "crème brûlée"]


def own_file(path, encoding, rows=60, sep=",", labels=("negative", "Neutral", "POSITIVE")):
    lines = [f"tweet{sep}sentiment"] + [f"{ACCENTED[i % 5]} {i}{sep}{labels[i % 3]}" for i in range(rows)]
    path.write_bytes(("\n".join(lines) + "\n").encode(encoding))
    return path


@pytest.mark.parametrize("encoding,name", [("latin-1", "data.csv"), ("cp1252", "data.csv"), ("utf-8-sig", "data.csv"),
                                           ("utf-16", "data.tsv"), ("utf-8", "data.csv")])
def test_own_file_in_any_usual_encoding_with_guessed_columns_loads_and_splits(tmp_path, encoding, name):
    path = own_file(tmp_path / name, encoding, sep="\t" if name.endswith(".tsv") else ",")
    splits, report = prepare(TrainConfig(dataset=str(path), train_size=0, test_size=0, validation_share=0.1,
                                         drop_near_duplicates=False))  # templated rows: near-copies by design
    texts = list(splits["train"]["text"]) + list(splits["validation"]["text"]) + list(splits["test"]["text"])
    assert sorted(texts) == sorted(f"{ACCENTED[i % 5]} {i}" for i in range(60))  # the accents came through
    assert report.dropped_unknown_label == 0 and report.sizes == {"train": 43, "validation": 5, "test": 12}
    # stratified: the held-out test split has the file's balance (a third of each label)
    assert report.label_counts["test"] == {"negative": 4, "neutral": 4, "positive": 4}
    assert text_encoding(path).replace("-", "_").startswith({"latin-1": "cp1252", "cp1252": "cp1252", "utf-8-sig": "utf_8_sig",
                                                             "utf-16": "utf_16", "utf-8": "utf_8"}[encoding][:5].replace("-", "_"))


def test_a_binary_file_is_refused_in_words(tmp_path):
    path = tmp_path / "photo.csv"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8)
    with pytest.raises(UserError, match="not a text file in UTF-8, UTF-16 or Windows-1252/Latin-1"):
        prepare(TrainConfig(dataset=str(path)))


def test_a_file_too_small_to_split_says_so_in_words(tmp_path):
    path = tmp_path / "one.csv"
    path.write_text("text,label\ni love it,positive\n")
    with pytest.raises(UserError, match=f"has 1 row\\(s\\): one file needs at least {MIN_ROWS_SINGLE_FILE}") as info:
        prepare(TrainConfig(dataset=str(path)))
    assert "n_samples" not in str(info.value)


def test_columns_are_guessed_only_where_left_at_the_default(tmp_path):
    path = own_file(tmp_path / "data.csv", "utf-8")
    with pytest.raises(UserError, match=r"no column 'body' \(it has: tweet, sentiment\)"):
        prepare(TrainConfig(dataset=str(path), text_column="body"))  # given and absent: said, not guessed
    rows = [("body", "tweet", "sentiment")] + [(f"body {i}", f"tweet {i}", ("negative", "neutral", "positive")[i % 3])
                                              for i in range(60)]
    both = tmp_path / "both.csv"
    both.write_text("\n".join(",".join(r) for r in rows) + "\n")
    every = dict(train_size=0, test_size=0, validation_share=0.0, drop_near_duplicates=False)
    texts = lambda cfg: sorted(t for split in prepare(cfg)[0].values() for t in split["text"])
    assert texts(TrainConfig(dataset=str(both), **every)) == sorted(f"tweet {i}" for i in range(60))  # guessed
    assert texts(TrainConfig(dataset=str(both), text_column="body", **every)) == sorted(f"body {i}" for i in range(60))


@pytest.mark.parametrize("values,expected", [
    ([0, 1, 2], [0, 1, 2]), (["0", "1", "2"], [0, 1, 2]), ([-1, 0, 1], [0, 1, 2]), (["-1", "0", "1"], [0, 1, 2]),
    (["neg", "neu", "pos"], [0, 1, 2]), (["Negative", "NEUTRAL", "positive"], [0, 1, 2]),
    (["pos", "Positive", "POSITIVE"], [2, 2, 2]), ([0.0, 1.0, 2.0], [0, 1, 2]), ([1, 2], [1, 2])])
def test_label_schemes_are_mapped(values, expected):
    to_id = label_mapper(values)
    assert [to_id(v) for v in values] == expected


def test_labels_that_are_not_sentiments_are_refused_naming_them():
    with pytest.raises(UserError, match=r"found: 'happy', 'sad', 'meh'"):
        label_mapper(["happy"] * 5 + ["sad"] * 3 + ["meh"] * 2 + ["positive"])
    with pytest.raises(UserError, match="found: -1, 2"):
        label_mapper([-1, 2, -1, 2])  # neither 0/1/2 nor -1/0/1: -1 fits one, 2 the other
    assert label_mapper(["positive"] * 19 + ["sarcastic"])("sarcastic") is None  # a stray one: dropped, counted


def test_preview_shows_the_file_before_training(tmp_path):
    path = own_file(tmp_path / "data.csv", "latin-1", rows=30, labels=("neg", "neu", "pos"))
    info = preview(str(path), rows=3, drop_near_duplicates=False)  # templated rows
    assert info["rows"] == 30 and info["columns"] == ["tweet", "sentiment"] and info["encoding"] == "cp1252"
    assert (info["text_column"], info["label_column"]) == ("tweet", "sentiment")
    assert info["head"][0] == {"tweet": "café très bon 0", "sentiment": "neg"} and len(info["head"]) == 3
    assert info["label_counts"] == {"negative": 10, "neutral": 10, "positive": 10}
    assert sum(info["report"]["sizes"].values()) == 30 and info["summary"]


def test_a_file_of_other_labels_is_refused_naming_the_column_and_values(tmp_path):
    path = tmp_path / "moods.csv"
    path.write_text("tweet,mood\n" + "".join(f"tweet {i},{['happy', 'sad'][i % 2]}\n" for i in range(20)))
    with pytest.raises(UserError, match=r"label column 'mood' holds values that are not sentiments \(found: 'happy', 'sad'\)"):
        prepare(TrainConfig(dataset=str(path), label_column="mood"))
