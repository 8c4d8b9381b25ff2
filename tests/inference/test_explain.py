"""Explanations: word occlusion scores, the span, the competition's Jaccard, the CLI and the eval table."""
from __future__ import annotations

import json

import numpy as np
import pytest

from core.labels import LABELS
from inference.classifier import Classifier
from inference.explain import best_span, explain, explain_many, jaccard


@pytest.fixture(scope="module")
def clf(trained_run):
    return Classifier.load(trained_run)


@pytest.mark.parametrize("a, b, expected", [
    ("Sooo SAD", "sooo sad", 1.0),                    # case does not count
    ("my boss is bullying me", "bullying me", 2 / 5),
    ("a b c", "b c d", 2 / 4),
    ("sad!", "sad", 0.0),                             # punctuation stays part of the word, as in Kaggle
    ("  so   happy ", "so happy", 1.0),                # whitespace only separates
    ("happy happy joy", "happy joy", 1.0),            # word sets
    ("", "", 1.0),
    ("", "something", 0.0),
])
def test_jaccard_is_the_competitions_word_level_score(a, b, expected):
    assert jaccard(a, b) == pytest.approx(expected)


@pytest.mark.parametrize("scores, threshold, span", [
    ([0.0, 0.1, 0.9, 0.8, 0.0, -0.5, 0.7], 0.4, (2, 3)),     # the strong pair; a negative word breaks the run
    ([0.0, 0.1, 0.9, 0.8, 0.3, 0.7], 0.4, (2, 5)),           # a weak word is bridged when what follows pays
    ([0.2, -0.1, -0.3], 0.4, (0, 0)),
    ([-0.2, -0.1, 0.0], 0.4, (0, 2)),                         # nothing raises the label: the whole tweet
    ([0.5], 0.4, (0, 0)),
])
def test_best_span_is_the_highest_scoring_run_of_words(scores, threshold, span):
    assert best_span(scores, threshold) == span


def test_one_score_per_word_and_a_span_that_is_part_of_the_tweet(clf):
    text = "the  awful bus was late, so sad today"
    ex = explain(clf, text)
    assert [w for w, _ in ex.words] == text.split()
    assert ex.label == clf.classify(text)[0].label
    assert ex.scores == pytest.approx(clf.classify(text)[0].scores, abs=1e-5)
    assert ex.span and text[ex.span_start:ex.span_end] == ex.span
    assert " ".join(ex.span.split()) in " ".join(text.split())      # whole, consecutive words
    assert "".join(piece for piece, _ in ex.highlighted()) == text  # HighlightedText shows the whole text
    assert max(abs(v) for _, v in ex.highlighted() if v is not None) == pytest.approx(1.0)
    assert json.loads(json.dumps(ex.to_dict()))["words"][1]["word"] == "awful"


def test_a_words_score_is_what_the_label_loses_without_it(clf):
    text = "i hate this awful work"
    ex = explain(clf, text, label="negative")
    full = clf.classify(text)[0].scores["negative"]
    for i, (word, score) in enumerate(ex.words):
        without = " ".join(w for j, w in enumerate(text.split()) if j != i)
        assert score == pytest.approx(full - clf.classify(without)[0].scores["negative"], abs=1e-5), word


def test_any_label_can_be_explained_and_neutral_spans_the_tweet(clf):
    text = "going to the office for a meeting"
    for label in LABELS:
        ex = explain(clf, text, label=label)
        assert ex.label == label and len(ex.words) == 7
    assert explain(clf, text, label="neutral").span == text
    with pytest.raises(ValueError, match="label must be one of"):
        explain(clf, text, label="happy")


def test_a_one_word_tweet_is_scored_against_no_evidence(clf):
    ex = explain(clf, "awesome")
    assert ex.span == "awesome"
    assert ex.words[0][1] == pytest.approx(ex.scores[ex.label] - 1 / 3, abs=1e-6)


def test_explaining_many_tweets_at_once_gives_the_same_answers(clf):
    texts = ["so happy today", "worst bus ever, i cry", "lunch at home"]
    together = explain_many(clf, texts)
    for text, ex in zip(texts, together):
        alone = explain(clf, text)
        assert (ex.label, ex.span) == (alone.label, alone.span)
        assert np.allclose([s for _, s in ex.words], [s for _, s in alone.words], atol=1e-5)


def test_the_command_line_explains_with_explain(trained_run, capsys):
    from inference.__main__ import main

    assert main(["--model", str(trained_run), "--explain", "--json", "so happy and glad today"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["label"] in LABELS and out["span"]
    assert [w["word"] for w in out["words"]] == "so happy and glad today".split()
    assert main(["--model", str(trained_run), "--explain", "sad broken day"]) == 0
    assert "span: " in capsys.readouterr().out


def test_the_eval_table_scores_spans_against_people(trained_run, tiny_dataset, tmp_path, capsys):
    from bench import explain_eval

    # people marked the sentiment words in each tweet (all of it for neutral), as in the Kaggle data
    rows = [json.loads(line) for line in (tiny_dataset / "train.jsonl").read_text().splitlines()]
    sentiment_words = {"love", "great", "happy", "awesome", "wonderful", "best", "amazing", "thanks", "fun", "glad",
                       "hate", "awful", "sad", "terrible", "worst", "angry", "broken", "sick", "bad", "cry"}
    selected = tmp_path / "selected.jsonl"
    selected.write_text("".join(json.dumps({"id": r["id"], "selected_text": r["text"] if r["label"] == 1 else " ".join(
        w for w in r["text"].split() if w in sentiment_words)}) + "\n" for r in rows))

    table = explain_eval.evaluate(trained_run, selected=selected, dataset=tiny_dataset)
    whole = table["rows"]["whole tweet"]
    assert table["n"] == 18  # the run's validation rows: 10% of its 180 training tweets
    assert whole["all"] == pytest.approx(np.mean([jaccard(t, s) for t, s in zip(table["texts"], table["selected"])]))
    assert whole["neutral"] == pytest.approx(1.0)
    for name in ("occlusion span, model's label", "occlusion span, true label"):
        assert 0 <= table["rows"][name]["all"] <= 1
    assert explain_eval.main([str(trained_run), "--selected", str(selected), "--dataset", str(tiny_dataset)]) == 0
    out = capsys.readouterr().out
    assert "| whole tweet |" in out and "best Kaggle systems" in out



def _tiny_llama(tokenizer):
    """A 2-layer llama (rotary positions, grouped-query attention: smollm2's architecture) over the
    tiny tokenizer, as a sequence classifier."""
    import torch
    from transformers import LlamaConfig, LlamaForSequenceClassification

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         num_labels=len(LABELS), pad_token_id=tokenizer.pad_token_id)
    return Classifier(LlamaForSequenceClassification(config), tokenizer, "tiny-llama", "memory")


VARIANT_TEXTS = ["i hate this awful work", "  so   happy  today!! ", "awesome", "lunch at home , then a nap",
                 "worst bus ever " * 60]  # the last one: past max_length, so rows are truncated


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_packed_variants_give_the_same_probabilities_as_padded_rows(clf, arch, monkeypatch):
    from core import model as model_module
    from inference.explain import _WORD, _without

    model = clf if arch == "gpt2" else _tiny_llama(clf.tokenizer)
    monkeypatch.setattr(model_module, "PACK_TOKENS", 160)  # long tweets need several packs
    for text in VARIANT_TEXTS:
        rows = [r for r in (_without(text, *m.span()) for m in _WORD.finditer(text)) if r.strip()]
        packed = model.classify_variants(text, rows)
        assert packed.shape == (len(rows) + 1, len(LABELS))
        assert np.allclose(packed, model.predict_proba([text, *rows]), atol=1e-5), text[:30]
    model.pack_variants = False  # the reference path gives the same
    assert np.allclose(model.classify_variants(VARIANT_TEXTS[0], ["i hate this work"]),
                       model.predict_proba([VARIANT_TEXTS[0], "i hate this work"]), atol=1e-6)


def test_latency_times_classify_and_both_ways_of_explaining(trained_run, capsys):
    from bench import explain_eval

    assert explain_eval.main([str(trained_run), "--latency", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["words"] == len(explain_eval.LATENCY_TWEET.split())
    # explaining sends the tweet and each of its 15 one-word-less variants through the model, classifying
    # sends the tweet alone: it costs more either way (packed or padded), and the ratios say by how much
    assert 0 < out["classify"] < min(out["explain"], out["explain_padded"])
    assert out["ratio"] == pytest.approx(out["explain"] / out["classify"]) and out["ratio"] > 1
    assert out["ratio_padded"] == pytest.approx(out["explain_padded"] / out["classify"]) and out["ratio_padded"] > 1
