import numpy as np
import pytest
import torch

from core.fewshot import CONTENT_FREE, FewShotClassifier, build_chat, build_prefix, calibration_texts, pick_examples
from finetune.baseline import evaluate
from core.model import can_pack, load_causal_lm, load_tokenizer

ROWS = [(f"tweet {i}", i % 3) for i in range(30)]


def test_examples_are_balanced_and_reproducible():
    picked = pick_examples(ROWS, 6, seed=1)
    assert sorted(l for _, l in picked) == [0, 0, 1, 1, 2, 2]
    assert picked == pick_examples(ROWS, 6, seed=1) and pick_examples(ROWS, 0) == []
    assert build_prefix(picked[:1]).count("Tweet: ") == 2 and build_prefix([]).endswith("Tweet: ")
    calibration = calibration_texts(ROWS, 10, exclude=picked)
    assert len(set(calibration)) == 10 and not set(calibration) & {t for t, _ in picked}
    assert calibration == calibration_texts(ROWS, 10, exclude=picked)


@pytest.mark.parametrize("one_per_pack", [False, True])
def test_few_shot_scores_the_label_words_after_the_prompt(tiny_model, one_per_pack, monkeypatch):
    from core import model as model_module

    tok = load_tokenizer(str(tiny_model))
    model = load_causal_lm(str(tiny_model))
    clf = FewShotClassifier(model, tok, pick_examples(ROWS, 3), calibration_texts(ROWS, 12))
    if one_per_pack:  # packs too small for two prompts: the examples are computed again in each
        monkeypatch.setattr(model_module, "PACK_TOKENS", len(clf._prefix_ids) + 1)
    texts = ["i love this", "the monday bus at the office again", "so sad"]
    probs = clf.predict_proba(texts, batch_size=2)  # packed: the examples computed once per pack
    padded = clf.predict_proba(texts, batch_size=2, pack=False)
    assert probs.shape == (3, 3) and np.allclose(probs.sum(1), 1, atol=1e-5)
    # packed, and batched and padded, equal one prompt at a time, scored by hand
    np.testing.assert_allclose(probs, padded, atol=1e-5)
    raw = clf.predict_proba(texts, calibrated=False)
    np.testing.assert_allclose(raw, clf.predict_proba(texts, calibrated=False, pack=False), atol=1e-5)
    for text, p in zip(texts, raw):
        ids = torch.tensor([clf._encode(text)])
        with torch.inference_mode():
            logits = model(input_ids=ids).logits[0, -1, clf.label_token_ids]
        np.testing.assert_allclose(p, torch.softmax(logits, -1).numpy(), atol=1e-5)


def test_one_tweet_reuses_the_examples_cached_once(tiny_model, monkeypatch):
    """A single tweet (a visitor's message) runs only its own tokens after the examples' cached keys and
    values: the same probabilities as the whole prompt, and the examples are computed once."""
    tok = load_tokenizer(str(tiny_model))
    model = load_causal_lm(str(tiny_model))
    clf = FewShotClassifier(model, tok, pick_examples(ROWS, 3), calibration_texts(ROWS, 12))
    calls = []  # (tokens, with cached keys and values) per forward of the body

    def record(module, args, kwargs):
        ids = kwargs["input_ids"] if kwargs.get("input_ids") is not None else args[0]
        calls.append((ids.shape[1], kwargs.get("past_key_values") is not None))
    model.base_model.register_forward_pre_hook(record, with_kwargs=True)
    for text in ["i love this", "the monday bus at the office again", "i love this"]:
        np.testing.assert_allclose(clf.predict_proba([text]), clf.predict_proba([text], pack=False), atol=1e-5)
        np.testing.assert_allclose(clf.predict_proba([text], calibrated=False),
                                   clf.predict_proba([text], calibrated=False, pack=False), atol=1e-5)
    prefix = len(clf._prefix_ids)
    assert [n for n, cached in calls if not cached and n == prefix] == [prefix]  # the examples alone: once
    cached = [n for n, cached in calls if cached]
    assert len(cached) == 6 and max(cached) < prefix  # each tweet: its own tokens and the answer cue only


def test_calibration_divides_by_the_mean_over_the_calibration_tweets(tiny_model):
    tok = load_tokenizer(str(tiny_model))
    model = load_causal_lm(str(tiny_model))
    calibration = calibration_texts(ROWS, 20)
    clf = FewShotClassifier(model, tok, pick_examples(ROWS, 3), calibration)
    raw = clf.predict_proba(calibration, calibrated=False)
    np.testing.assert_allclose(clf.calibration, raw.mean(0), atol=1e-6)
    # divided by that mean, the calibration tweets favour no label: every label's mean is the same
    np.testing.assert_allclose((raw / clf.calibration).mean(0), 1, atol=1e-5)
    texts = ["i love this", "so sad", "the bus"]
    raw, probs = clf.predict_proba(texts, calibrated=False), clf.predict_proba(texts)
    expected = raw / clf.calibration
    np.testing.assert_allclose(probs, expected / expected.sum(1, keepdims=True), atol=1e-6)
    assert not np.allclose(probs, raw, atol=1e-3) and np.allclose(probs.sum(1), 1, atol=1e-6)
    # no unlabelled tweets: content-free inputs
    plain = FewShotClassifier(model, tok, pick_examples(ROWS, 3))
    np.testing.assert_allclose(plain.calibration, plain.predict_proba(CONTENT_FREE, calibrated=False).mean(0), atol=1e-6)
    assert "content-free" in plain.details and "20 unlabelled tweets" in clf.details and not clf.chat


def test_a_chat_template_frames_the_prompt_and_packing_still_matches(tiny_model):
    tok = load_tokenizer(str(tiny_model))
    tok.chat_template = ("{% for m in messages %}<|endoftext|>{{ m['role'] }}\n{{ m['content'] }}\n{% endfor %}"
                         "{% if add_generation_prompt %}<|endoftext|>assistant\n{% endif %}")
    head, tail = build_chat(tok, [("so happy", 2)])
    assert head.startswith("<|endoftext|>system\nClassify") and "assistant\nSentiment: positive" in head
    assert head.endswith("user\nTweet: ") and tail == "\n<|endoftext|>assistant\nSentiment:"
    clf = FewShotClassifier(load_causal_lm(str(tiny_model)), tok, pick_examples(ROWS, 3), calibration_texts(ROWS, 8))
    assert clf.chat and clf.details.startswith("chat template")
    texts = ["i love this", "the monday bus at the office again", "so sad"]
    np.testing.assert_allclose(clf.predict_proba(texts), clf.predict_proba(texts, pack=False), atol=1e-5)


def test_evaluate_is_cached(tiny_model, tmp_path):
    a = evaluate(str(tiny_model), ROWS, ROWS[:9], k=0, cache_dir=tmp_path)
    assert a["method"] == "zero-shot prompting" and a["n"] == 9
    assert a["prompt"] == "plain prompt, calibrated on 30 unlabelled tweets"
    assert set(a["uncalibrated"]) >= {"accuracy", "f1_macro"}
    assert len(list(tmp_path.glob("baseline-*.json"))) == 1
    assert evaluate(str(tiny_model), ROWS, ROWS[:9], k=0, cache_dir=tmp_path) == a


def test_a_model_without_position_ids_is_prompted_row_by_row(tiny_model):
    from transformers import BloomConfig, BloomForCausalLM  # ALiBi: its body takes no position ids

    tok = load_tokenizer(str(tiny_model))
    torch.manual_seed(0)
    bloom = BloomForCausalLM(BloomConfig(n_layer=1, hidden_size=16, n_head=2, vocab_size=len(tok),
                                         bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id))
    assert not can_pack(bloom)
    clf = FewShotClassifier(bloom, tok, pick_examples(ROWS, 3))
    probs = clf.predict_proba(["i love this", "so sad"])  # packing is skipped, not failed
    np.testing.assert_allclose(probs, clf.predict_proba(["i love this", "so sad"], pack=False), atol=1e-6)
    np.testing.assert_allclose(clf.predict_proba(["so sad"]), probs[1:], atol=1e-5)  # and the cached prefix works


def test_serving_can_calibrate_on_the_tweets_written_for_the_project():
    from core.fewshot import builtin_calibration

    tweets = builtin_calibration()
    assert len(tweets) >= 50 and len(set(tweets)) == len(tweets) and not any(t.startswith("#") for t in tweets)
