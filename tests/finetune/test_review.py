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


def test_embeddings_and_probabilities_come_from_one_pass_of_the_model_and_are_cached(tiny_model, tmp_path):
    import torch

    texts = ["so happy today", "the bus is late", "i hate mondays", "lunch at the office"]
    torch.manual_seed(0)  # the base model's new classification head: the same in both loads
    features, probs = review.embed(str(tiny_model), texts, tmp_path)
    assert features.shape == (4, 32) and not np.allclose(features[0], features[1])
    assert probs.shape == (4, 3) and np.allclose(probs.sum(1), 1, atol=1e-5)
    from core.model import load_classifier, load_tokenizer, predict_proba
    tokenizer = load_tokenizer(str(tiny_model))
    torch.manual_seed(0)
    model = load_classifier(str(tiny_model), tokenizer).eval()
    np.testing.assert_allclose(probs, predict_proba(model, tokenizer, texts, review.EMBED_MAX_TOKENS), atol=1e-5)
    (cached,) = tmp_path.glob("embeddings-*.npz")
    np.savez(cached, features=np.zeros_like(features), probs=np.zeros_like(probs))  # the next call reads the cache
    assert all(np.all(a == 0) for a in review.embed(str(tiny_model), texts, tmp_path))


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
    texts, labels = review.training_rows(TrainConfig(base_model=str(tiny_model), dataset=str(tiny_dataset),
                                                     train_size=0, seed=7))
    texts, labels, _ = review.unseen_by(trained_run, texts, labels)
    features, own = review.embed(str(trained_run), texts, runs_dir / "_cache")
    cross = np.full((len(texts), 3), 1 / 3)
    monkeypatch.setattr(review, "out_of_sample_probs", lambda *a, **k: cross)
    found, summary = review.review(texts, labels, str(trained_run), runs_dir / "_cache")
    expected = ((cross + own) / 2).argmax(1) == np.asarray(labels)
    assert summary["rows"] == len(texts) and summary["out_of_fold_accuracy"] == round(float(expected.mean()), 4)
