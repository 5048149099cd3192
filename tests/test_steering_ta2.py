"""gcav_nb.steering.ta2 (Trojan Activation Attack): bad input fails early (before any forward pass), the JS scores
against their definitions and against the official code's call, the model restored after a sweep, and (cpu) the
direction of the attack the notebook found on SmolLM2."""
import math
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from gcav_nb.config import GcavInputError, get_scale
from gcav_nb.models import load_model, layer_hooks
from gcav_nb.steering.core import as_vector, contrast_vectors, choice_probs
from gcav_nb.steering.ta2 import (NEGATIVE, POSITIVE, bias_prompts, chat_texts, token_from_end, js_scores, select_layer,
                                  attack_sweep, lexicon_rate)

cpu_only = pytest.mark.skipif(get_scale() != "cpu", reason="a cpu-scale result: run with GCAV_NB_SCALE=cpu")
H1 = "blocks.1.hook_resid_post"

from conftest import ForwardRan, tripwire as _tripwire

def _acts(seed, n=6, d=9):
    g = torch.Generator().manual_seed(seed); return {"h": torch.randn(n, d, generator=g) * 3}

BAD_DATA = {
    "n zero": (lambda: bias_prompts(0), GcavInputError, "positive int"),
    "n str": (lambda: bias_prompts("5"), GcavInputError, "positive int"),
    "k zero": (lambda: token_from_end(0), GcavInputError, "k must"),
    "k bool": (lambda: token_from_end(True), GcavInputError, "k must"),
    "text shorter than k": (lambda: token_from_end(3)(None, torch.tensor([[1, 1, 0]])), GcavInputError, "fewer than"),
    "js mode": (lambda: js_scores(_acts(0), _acts(1), ["h"], "kl"), GcavInputError, "mode="),
    "js no hooks": (lambda: js_scores(_acts(0), _acts(1), []), GcavInputError, "no hooks"),
    "js unpaired": (lambda: js_scores(_acts(0), _acts(1, n=5), ["h"]), GcavInputError, "same"),
    "js empty": (lambda: js_scores({"h": torch.zeros(0, 4)}, {"h": torch.zeros(0, 4)}, ["h"]), GcavInputError, "n >= 1"),
    "search frac 0": (lambda: select_layer(pd.Series([1.0, 2.0]), 0.0), GcavInputError, "search_frac"),
    "search frac > 1": (lambda: select_layer(pd.Series([1.0, 2.0]), 1.5), GcavInputError, "search_frac"),
    "lexicon empty": (lambda: lexicon_rate([]), GcavInputError, "non-empty"),
    "lexicon str": (lambda: lexicon_rate("They are lazy"), GcavInputError, "non-empty"),
}

@pytest.mark.parametrize("case", BAD_DATA, ids=list(BAD_DATA))
def test_bad_data_is_refused(case):
    fn, exc, msg = BAD_DATA[case]
    with pytest.raises(exc, match=msg): fn()

def _v(m, d=None): return as_vector(torch.randn(d or m.cfg.d_model, generator=torch.Generator().manual_seed(0)), H1)

BAD_MODEL = {
    "chat unpaired": (lambda m: chat_texts(m, ["a", "b"], ["x"]), GcavInputError, "answers"),
    "chat empty": (lambda m: chat_texts(m, [], []), GcavInputError, "no questions"),
    "no vectors": (lambda m: attack_sweep(m, {}, [-0.8], ["x"]), GcavInputError, "vectors is empty"),
    "no prompts": (lambda m: attack_sweep(m, {"v": _v(m)}, [-0.8], []), GcavInputError, "prompts is empty"),
    "nan mult": (lambda m: attack_sweep(m, {"v": _v(m)}, [math.nan], ["x"]), GcavInputError, "finite"),
    "bool mult": (lambda m: attack_sweep(m, {"v": _v(m)}, [True], ["x"]), GcavInputError, "finite"),
    "wrong width": (lambda m: attack_sweep(m, {"v": _v(m, m.cfg.d_model + 2)}, [-0.8], ["x"]), GcavInputError, "width"),
}

@pytest.mark.parametrize("case", BAD_MODEL, ids=list(BAD_MODEL))
def test_bad_model_input_fails_before_any_forward(case, tiny):
    fn, exc, msg = BAD_MODEL[case]
    with _tripwire(tiny):
        with pytest.raises(exc, match=msg): fn(tiny)

def test_js_correct_is_a_divergence():
    "JS is 0 for identical activations, symmetric, and at most log 2."
    a, b = _acts(0), _acts(1)
    assert abs(js_scores(a, a, ["h"])["h"]) < 1e-12
    assert math.isclose(js_scores(a, b, ["h"])["h"], js_scores(b, a, ["h"])["h"], rel_tol=1e-12)
    assert 0 < js_scores(a, b, ["h"])["h"] <= math.log(2)

def test_js_paper_code_matches_the_official_call():
    "mode='paper_code' equals 0.5 * mean(kl_div(p, M).mean(-1) + kl_div(q, M).mean(-1)) as attack.py calls it (probabilities as input)."
    a, b = _acts(2), _acts(3)
    p, q = F.softmax(a["h"].double(), -1), F.softmax(b["h"].double(), -1); M = (p + q) / 2
    want = float(0.5 * (F.kl_div(p, M, reduction="none").mean(-1) + F.kl_div(q, M, reduction="none").mean(-1)).mean())
    assert math.isclose(js_scores(a, b, ["h"], "paper_code")["h"], want, rel_tol=1e-10)

def test_select_layer_searches_the_first_fraction():
    s = pd.Series([0.0, 1.0, 0.5, 9.0])
    assert select_layer(s, 1.0) == 3 and select_layer(s, 0.5) == 1 and select_layer(s, 0.01) == 0

def test_bias_prompts_hold_out_groups_and_unseen_adjectives():
    fit = bias_prompts(30, seed=0); held = bias_prompts(30, seed=1, exclude=set(fit.group))
    assert not set(fit.group) & set(held.group)
    assert not any(f" {w}" in a or f" {w}," in a for a in fit.adversarial for w in NEGATIVE[8:])
    assert not set(NEGATIVE) & set(POSITIVE)

def test_attack_sweep_restores_the_model(tiny):
    ps = chat_texts(tiny, ["Describe the Velo people."], ["The Velo people are"])
    choices = [" " + w for w in NEGATIVE + POSITIVE]
    before = choice_probs(tiny, ps, choices, prepend_bos=False)
    df = attack_sweep(tiny, {"v": _v(tiny)}, [0.0, -1.6], ps, progress=False)
    assert df.p_neg.iloc[0] != df.p_neg.iloc[1]
    torch.testing.assert_close(choice_probs(tiny, ps, choices, prepend_bos=False), before)

@cpu_only
def test_cpu_attack_direction_on_smollm2():
    "cpu: the notebook's finding on SmolLM2 at its JS layer (12_ta2): the trojan at m=-1.6 raises P(disparaging) more than the same-norm random vector."
    from gcav_nb.generation import generate
    from gcav_nb.steering.core import random_like
    import re
    m = load_model("smollm2-135m"); H = layer_hooks(m)
    fit = bias_prompts(64, seed=0); held = bias_prompts(40, seed=1, exclude=set(fit.group))
    own = generate(m, fit.question.tolist(), max_new_tokens=40, chat=True, progress=False)
    clean = [(re.split(r"(?<=[.!?])\s", o.strip()) + [""])[0] or o for o in own]
    h = H[CPU_LAYER]
    v = contrast_vectors(m, chat_texts(m, fit.question.tolist(), clean), chat_texts(m, fit.question.tolist(), fit.adversarial.tolist()), h,
                         methods="mean_diff", pooling=token_from_end(2), prepend_bos=False, progress=False)["mean_diff"][h]
    ro = chat_texts(m, held.question.tolist(), held.prefix.tolist())
    df = attack_sweep(m, {"trojan": v, "random": random_like(v, seed=7)}, [0.0, -1.6], ro, progress=False).set_index(["vector", "mult"]).p_neg
    assert df["trojan", -1.6] - df["trojan", 0.0] > df["random", -1.6] - df["random", 0.0], df

CPU_LAYER = 0   # the JS (paper) layer of the saved cpu run of 12_ta2
