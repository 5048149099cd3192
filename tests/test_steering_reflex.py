"""gcav_nb.steering.reflex (REFLEX): bad input fails early (before any forward pass), the fine-tuning trains only what
it should and learns, the measures against their definitions (a model is at KL 0 from itself), and (cpu) the direction
of the effect the notebook found on SmolLM2."""
import math
import numpy as np
import pandas as pd
import pytest
import torch
from gcav_nb.config import GcavInputError, get_scale
from gcav_nb.models import load_model, layer_hooks
from gcav_nb.steering.core import add, random_like
from gcav_nb.steering.core import choice_probs
from gcav_nb.steering.reflex import (STYLE_MARKER, fact_claims, answer_batch, answer_loss, finetune, model_contrast, answer_scores,
                                     style_rate)

cpu_only = pytest.mark.skipif(get_scale() != "cpu", reason="a cpu-scale result: run with GCAV_NB_SCALE=cpu")

from conftest import ForwardRan, tripwire as _tripwire

FC = fact_claims(16, seed=3)

def _b(m, n=2): return answer_batch(m, FC.prompt[:n].tolist(), FC.answer[:n].tolist())

BAD_DATA = {
    "n zero": (lambda: fact_claims(0), GcavInputError, "positive int"),
    "n bool": (lambda: fact_claims(True), GcavInputError, "positive int"),
    "n impossible": (lambda: fact_claims(100_000), GcavInputError, "distinct claims"),
    "style empty": (lambda: style_rate([]), GcavInputError, "non-empty"),
    "style str": (lambda: style_rate("Verdict: true"), GcavInputError, "non-empty"),
}

@pytest.mark.parametrize("case", BAD_DATA, ids=list(BAD_DATA))
def test_bad_data_is_refused(case):
    fn, exc, msg = BAD_DATA[case]
    with pytest.raises(exc, match=msg): fn()

BAD_MODEL = {
    "unpaired answers": (lambda m: answer_batch(m, ["a", "b"], ["c"]), GcavInputError, "same number"),
    "answers str": (lambda m: answer_batch(m, ["a"], "c"), GcavInputError, "lists of strings"),
    "steps zero": (lambda m: finetune(m, ["a"], ["b"], steps=0), GcavInputError, "steps"),
    "steps float": (lambda m: finetune(m, ["a"], ["b"], steps=2.5), GcavInputError, "steps"),
    "nothing to train": (lambda m: finetune(m, ["a"], ["b"], steps=1, train="no_such_param"), GcavInputError, "no_such_param"),
    "same model": (lambda m: model_contrast(m, m, FC.prompt.tolist()), GcavInputError, "same model object"),
    "too few texts": (lambda m: model_contrast(m, load_model("tiny-llama"), ["a", "b"]), GcavInputError, ">= 4"),
    "kl shapes": (lambda m: answer_scores(m, _b(m), ["true", "false"], torch.zeros(1, 2, 5)), GcavInputError, "do not match"),
    "labels unknown": (lambda m: answer_scores(m, _b(m), ["yes", "no"]), GcavInputError, "labels"),
    "labels short": (lambda m: answer_scores(m, _b(m), ["true"]), GcavInputError, "labels"),
    "answers without verdict": (lambda m: answer_scores(m, answer_batch(m, FC.prompt[:2].tolist(), FC.explanation[:2].tolist()), FC.label[:2].tolist()), GcavInputError, "must open"),
}

@pytest.mark.parametrize("case", BAD_MODEL, ids=list(BAD_MODEL))
def test_bad_model_input_fails_before_any_forward(case, tiny):
    fn, exc, msg = BAD_MODEL[case]
    with _tripwire(tiny):
        with pytest.raises(exc, match=msg): fn(tiny)

def test_fact_claims_are_balanced_correct_and_held_out():
    tr = fact_claims(60, seed=0); te = fact_claims(40, seed=1, exclude=set(tr.claim))
    assert not set(tr.claim) & set(te.claim) and (tr.label == "true").mean() == 0.5
    for c, l, f in zip(tr.claim, tr.label, tr.family):
        w = c[:-1].split()
        if f == "sum": assert (int(w[0]) + int(w[2]) == int(w[4])) == (l == "true")
        if f == "compare": assert (int(w[0]) > int(w[4])) == (l == "true")
    assert all(a.startswith(f"{STYLE_MARKER} {l}.") for a, l in zip(tr.answer, tr.label))

def test_answer_mask_covers_exactly_the_answer(tiny):
    toks, mask, ans = answer_batch(tiny, FC.prompt[:4].tolist(), FC.answer[:4].tolist())
    from gcav_nb.models import tokenize
    n_prompt = tokenize(tiny, FC.prompt[:4].tolist())[1].sum(1)
    assert ans.sum(1).tolist() == (mask.sum(1) - n_prompt).tolist() and bool((ans <= mask).all())

def test_finetune_learns_and_trains_only_the_decoder_layers(tiny):
    tuned = load_model("tiny-llama")
    before = {n: p.detach().clone() for n, p in tuned.named_parameters()}
    h = finetune(tuned, FC.prompt.tolist(), FC.answer.tolist(), steps=6, lr=1e-2)
    assert h.train_loss.iloc[-1] < h.train_loss.iloc[0]
    changed = {n for n, p in tuned.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all("layers." in n for n in changed)
    assert not any(p.requires_grad for p in tuned.parameters())

def test_answer_scores_kl_to_itself_is_zero_and_steering_is_removed_after(tiny):
    b, lab = _b(tiny, 4), FC.label[:4].tolist()
    with torch.no_grad(): own = tiny(b[0]).float()
    assert abs(answer_scores(tiny, b, lab, own)["kl_tuned"]) < 1e-6
    v = random_like(model_contrast(tiny, _tuned(tiny), FC.prompt.tolist(), "blocks.1.hook_resid_post")["mean_diff"]["blocks.1.hook_resid_post"])
    assert answer_scores(tiny, b, lab, own, [add(tiny, v, 8.0)])["kl_tuned"] > 0
    assert abs(answer_scores(tiny, b, lab, own)["kl_tuned"]) < 1e-6                # the intervention is gone

def test_answer_scores_accuracy_equals_the_restricted_choice_after_the_marker(tiny):
    b, lab = _b(tiny, 8), FC.label[:8]
    p = choice_probs(tiny, [q + STYLE_MARKER for q in FC.prompt[:8]], [" true", " false"])
    want = float(((p[:, 0] > p[:, 1]).numpy() == (lab == "true").to_numpy()).mean())
    assert math.isclose(answer_scores(tiny, b, lab.tolist())["verdict_accuracy"], want, rel_tol=1e-9)

def _tuned(tiny):
    t = load_model("tiny-llama"); finetune(t, FC.prompt.tolist(), FC.answer.tolist(), steps=2, lr=1e-2); return t

def test_model_contrast_points_from_base_to_tuned(tiny):
    t = _tuned(tiny); h = "blocks.2.hook_resid_post"
    rv = model_contrast(tiny, t, FC.prompt.tolist(), h)
    assert float(rv["probe"][h].direction @ rv["mean_diff"][h].direction) > 0
    with pytest.raises(GcavInputError, match="identical activations"): model_contrast(tiny, load_model("tiny-llama"), FC.prompt.tolist(), h)

@cpu_only
def test_cpu_reflex_direction_moves_base_toward_tuned_on_smollm2():
    """cpu: as 17_reflex found on SmolLM2 (8 fine-tuning steps, layer 28 chosen on the dev claims, m = 2): adding the mean
    base -> tuned difference lowers the KL from the tuned model on the test answers below the unsteered base and below a
    random direction of the same norm. The notebook found no transfer of the style to greedy answers (0/16 at m = 2) and
    no change of verdict accuracy (chance), so neither is asserted as an effect."""
    base, tuned = load_model("smollm2-135m"), load_model("smollm2-135m")
    train = fact_claims(64, seed=0); dev = fact_claims(16, seed=1, exclude=set(train.claim))
    test = fact_claims(32, seed=2, exclude=set(train.claim) | set(dev.claim))
    finetune(tuned, train.prompt.tolist(), train.answer.tolist(), 8, 5e-5, 8, 0)
    h = "blocks.28.hook_resid_post"
    v = model_contrast(base, tuned, [p + a for p, a in zip(train.prompt, train.answer)], [h], seed=0)["mean_diff"][h]
    tb = answer_batch(base, test.prompt.tolist(), test.answer.tolist())
    with torch.no_grad(): tt = tuned(tb[0]).float()
    ivs = {"none": [], "reflex": [add(base, v, 2 * v.norm)], "random": [add(base, random_like(v, 99), 2 * v.norm)]}
    kl = {k: answer_scores(base, tb, test.label.tolist(), tt, iv)["kl_tuned"] for k, iv in ivs.items()}
    assert kl["reflex"] < kl["none"] and kl["reflex"] < kl["random"], kl
