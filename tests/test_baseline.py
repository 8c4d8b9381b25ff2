import numpy as np
import pytest
import torch

from core.fewshot import FewShotClassifier, build_prefix, pick_examples
from finetune.baseline import evaluate
from core.model import can_pack, load_causal_lm, load_tokenizer

ROWS = [(f"tweet {i}", i % 3) for i in range(30)]


def test_examples_are_balanced_and_reproducible():
    picked = pick_examples(ROWS, 6, seed=1)
    assert sorted(l for _, l in picked) == [0, 0, 1, 1, 2, 2]
    assert picked == pick_examples(ROWS, 6, seed=1) and pick_examples(ROWS, 0) == []
    assert build_prefix(picked[:1]).count("Tweet: ") == 1


@pytest.mark.parametrize("one_per_pack", [False, True])
def test_few_shot_scores_the_label_words_after_the_prompt(tiny_model, one_per_pack, monkeypatch):
    from core import model as model_module

    tok = load_tokenizer(str(tiny_model))
    model = load_causal_lm(str(tiny_model))
    clf = FewShotClassifier(model, tok, pick_examples(ROWS, 3))
    if one_per_pack:  # packs too small for two prompts: the examples are computed again in each
        monkeypatch.setattr(model_module, "PACK_TOKENS", len(clf._prefix_ids) + 1)
    texts = ["i love this", "the monday bus at the office again", "so sad"]
    probs = clf.predict_proba(texts, batch_size=2)  # packed: the examples computed once per pack
    padded = clf.predict_proba(texts, batch_size=2, pack=False)
    assert probs.shape == (3, 3) and np.allclose(probs.sum(1), 1, atol=1e-5)
    # packed, and batched and padded, equal one prompt at a time, scored by hand
    for text, p, q in zip(texts, probs, padded):
        np.testing.assert_allclose(p, q, atol=1e-5)
        ids = torch.tensor([clf._encode(text)])
        with torch.inference_mode():
            logits = model(input_ids=ids).logits[0, -1, clf.label_token_ids]
        np.testing.assert_allclose(p, torch.softmax(logits, -1).numpy(), atol=1e-5)


def test_evaluate_is_cached(tiny_model, tmp_path):
    a = evaluate(str(tiny_model), ROWS, ROWS[:9], k=0, cache_dir=tmp_path)
    assert a["method"] == "zero-shot prompting" and a["n"] == 9
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
