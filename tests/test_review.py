"""The label review: out-of-sample probabilities, confident learning, the flip check and exclusions."""
import json

import numpy as np

from core.runs import Run
from finetune.config import TrainConfig
from finetune import exclusions, review


def separable(n: int = 300, seed: int = 0):
    """Features in which each label is its own cluster, as a good embedder would give."""
    rng = np.random.default_rng(seed)
    labels = [i % 3 for i in range(n)]
    centres = np.eye(3, 8) * 4
    return centres[labels] + rng.normal(size=(n, 8)), labels


def test_flipped_labels_are_found_when_the_features_separate_the_classes():
    features, labels = separable()
    noisy, flipped = review.flip(labels, 0.05, seed=1)
    assert len(flipped) == 15 and all(noisy[i] != labels[i] for i in flipped)
    assert all(noisy[i] == labels[i] for i in range(len(labels)) if i not in flipped)
    probs = review.out_of_sample_probs(features, noisy)
    found = review.suspects([f"t{i}" for i in range(len(labels))], noisy, probs)
    scores = review.flip_scores(found, flipped, len(labels))
    assert scores["recall"] >= 0.9 and scores["top_precision"] >= 0.9
    assert [s.score for s in found] == sorted(s.score for s in found)  # most doubtful first


def test_embeddings_come_from_the_model_and_are_cached(tiny_model, tmp_path):
    texts = ["so happy today", "the bus is late", "i hate mondays", "lunch at the office"]
    first = review.embed(str(tiny_model), texts, tmp_path)
    assert first.shape == (4, 32) and not np.allclose(first[0], first[1])
    (cached,) = tmp_path.glob("embeddings-*.npy")
    np.save(cached, np.zeros_like(first))  # the second call must read the cache, not the model
    assert np.all(review.embed(str(tiny_model), texts, tmp_path) == 0)


def test_exclusions_are_listed_folded(runs_dir):
    assert exclusions.excluded(runs_dir) == set()
    assert exclusions.exclude(runs_dir, "  Some Tweet  ", "mislabelled") == 1
    assert exclusions.exclude(runs_dir, "some tweet") == 1  # the same text, folded
    assert exclusions.excluded(runs_dir) == {"some tweet"}


def test_decisions_and_corrections_close_suspects_and_the_latest_decision_wins(runs_dir):
    from core.runs import write_json
    from finetune import corrections

    texts = ["keep me", "drop me", "fix me", "still open"]
    runs_dir.mkdir(parents=True, exist_ok=True)
    write_json(runs_dir / exclusions.REVIEW_FILE,
               {"summary": {}, "suspects": [{"text": t, "given": "negative", "suggested": "positive", "score": 0.1}
                                            for t in texts]})
    exclusions.decide(runs_dir, "Keep me", exclusions.KEEP)
    exclusions.decide(runs_dir, "drop me", exclusions.KEEP)
    exclusions.decide(runs_dir, "drop me", exclusions.EXCLUDE)  # a second thought
    corrections.add(runs_dir, "fix me", "negative", "positive", "review")
    assert [s["text"] for s in exclusions.open_suspects(runs_dir)] == ["still open"]
    assert exclusions.excluded(runs_dir) == {"drop me"}
    (runs_dir / exclusions.EXCLUSIONS).open("a").write('{"text": "torn')  # a crash mid-line
    assert exclusions.excluded(runs_dir) == {"drop me"}


def test_the_command_line_writes_the_ranked_list_and_the_flip_check(tiny_model, tiny_dataset, runs_dir, capsys):
    out = runs_dir / "review.json"
    code = review.main(["--dataset", str(tiny_dataset), "--base-model", str(tiny_model), "--train-size", "150",
                        "--runs-dir", str(runs_dir), "--flip", "0.1", "--out", str(out)])
    assert code == 0
    saved = json.loads(out.read_text())
    assert saved["summary"]["rows"] == 150 and saved["summary"]["flip_check"]["flipped"] == 15
    assert {"row", "text", "given", "suggested", "score"} <= set(saved["suspects"][0])
    assert "flip check" in capsys.readouterr().out


def test_bad_input_is_one_line(capsys):
    assert review.main(["--dataset", "/nope/data.csv", "--base-model", "x"]) == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_a_runs_backbone_reviews_only_rows_it_did_not_train_on(trained_run, tiny_model, tiny_dataset):
    from finetune.config import TrainConfig

    texts, labels = review.training_rows(TrainConfig(base_model=str(tiny_model), dataset=str(tiny_dataset),
                                                     train_size=0, seed=7))
    run_rows = set(review.training_rows(TrainConfig.from_dict(Run(trained_run).config))[0])
    kept, kept_labels, left_out = review.unseen_by(trained_run, texts, labels)
    assert left_out == len(set(texts) & run_rows) > 0 and not set(kept) & run_rows
    assert len(kept) == len(kept_labels) == len(texts) - left_out


def test_a_run_as_embedder_averages_in_its_own_probabilities(trained_run, tiny_model, tiny_dataset, runs_dir,
                                                             monkeypatch):
    seen = []
    monkeypatch.setattr(review, "run_probs", lambda run, texts: seen.append(len(texts)) or np.full((len(texts), 3), 1 / 3))
    texts, labels = review.training_rows(TrainConfig(base_model=str(tiny_model), dataset=str(tiny_dataset),
                                                     train_size=0, seed=7))
    texts, labels, _ = review.unseen_by(trained_run, texts, labels)
    _, summary = review.review(texts, labels, str(trained_run), runs_dir / "_cache")
    assert seen == [len(texts)] and summary["rows"] == len(texts)
