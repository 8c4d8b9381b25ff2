"""The forgetting meter on the tiny model: base vs fine-tuned backbone perplexity, base LM head kept."""
import json

import pytest
import torch

from finetune import forgetting
from core.model import load_causal_lm, load_classifier, load_tokenizer


@pytest.fixture(scope="module")
def tiny(tiny_model, tmp_path_factory):
    """The tiny GPT-2, first taught a little English (a random LM is at chance, it has nothing to forget)."""
    tokenizer = load_tokenizer(str(tiny_model))
    lm = load_causal_lm(str(tiny_model))
    batch = torch.tensor(forgetting.read_tokens(tokenizer)).view(-1, forgetting.WINDOW)
    optimizer = torch.optim.AdamW(lm.parameters(), lr=1e-2)
    torch.manual_seed(0)
    for _ in range(40):
        lm(input_ids=batch, labels=batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    path = tmp_path_factory.mktemp("english") / "tiny-english"
    lm.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path), tokenizer


def test_shipped_text_is_general_english_of_a_few_thousand_words():
    text = forgetting.TEXT.read_text()
    assert len(text.split()) > 2000
    assert "@" not in text and "http" not in text  # prose, not tweets


def test_an_untouched_backbone_has_the_base_perplexity(tiny):
    base, tokenizer = tiny
    result = forgetting.measure(base, load_classifier(base, tokenizer), tokenizer)
    assert result["base_perplexity"] < 200  # it learned something (chance is ~ the vocabulary size, 400)
    assert result["base_perplexity"] == pytest.approx(result["tuned_perplexity"], rel=1e-4)
    assert abs(result["change"]) < 1e-3 and result["tokens"] == forgetting.MAX_TOKENS
    assert result["summary"].startswith("little forgetting")


def test_a_damaged_backbone_shows_forgetting_and_keeps_the_base_lm_head(tiny):
    base, tokenizer = tiny
    clf = load_classifier(base, tokenizer)
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in clf.base_model.named_parameters():
            if "wte" not in name:  # leave the (tied) embeddings: the LM head must stay the base one
                p.add_(torch.randn_like(p) * 0.5)
        clf.base_model.wte.weight.mul_(0.5)
    lm = forgetting.backbone_lm(base, clf)
    base_lm = load_causal_lm(base)
    assert torch.equal(lm.get_output_embeddings().weight, base_lm.get_output_embeddings().weight)
    assert torch.equal(lm.base_model.wte.weight, clf.base_model.wte.weight)
    result = forgetting.measure(base, clf, tokenizer)
    assert result["tuned_perplexity"] > result["base_perplexity"] * 1.1 and result["change"] > 0.1


def test_perplexity_matches_a_hand_computed_cross_entropy(tiny):
    base, tokenizer = tiny
    lm = load_causal_lm(base)
    ids = forgetting.read_tokens(tokenizer, "the bus was late so we walked home in the rain " * 10, 64)
    logits = lm(input_ids=torch.tensor([ids])).logits[0, :-1]
    expected = torch.nn.functional.cross_entropy(logits, torch.tensor(ids[1:])).exp().item()
    assert forgetting.perplexity(lm, ids, window=len(ids)) == pytest.approx(expected, rel=1e-4)


def test_cli_measures_a_run(trained_run, capsys):
    assert forgetting.main([str(trained_run)]) == 0
    assert "forgetting: general-English perplexity" in capsys.readouterr().out
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert set(metrics["forgetting"]) >= {"base_perplexity", "tuned_perplexity", "change"}
    assert "## Forgetting" in (trained_run / "README.md").read_text()


def test_cli_bad_folder_is_one_line_error(tmp_path, capsys):
    assert forgetting.main([str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err.startswith("error: ")
