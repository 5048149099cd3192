"""gcav_nb.train.train_loop: determinism per seed, early stopping and best weights, step counting, data kinds and the
bad-argument matrix (each fails before the first step)."""
import math
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from gcav_nb.config import GcavInputError
from gcav_nb.train import train_loop

def _data(n, seed, flip=False):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = (x[:, 0] + x[:, 1] > 0).long()
    return x, (1 - y) if flip else y

def _net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 2))

def _xent(m, b): return F.cross_entropy(m(b[0]), b[1])
KW = dict(progress=False, num_threads=1)

def test_same_seed_same_history_and_weights():
    "Two runs with one seed give identical histories (but time) and weights; another seed differs."
    tr, va = _data(100, 0), _data(50, 1)
    runs = [(_net(), s) for s in (3, 3, 4)]
    hs = [train_loop(n, _xent, tr, va, steps=40, batch_size=16, seed=s, log_every=5, **KW).drop(columns="time") for n, s in runs]
    assert hs[0].equals(hs[1]) and not hs[0].equals(hs[2])
    assert all(torch.equal(a, b) for a, b in zip(runs[0][0].parameters(), runs[1][0].parameters()))

def test_global_rng_untouched():
    "train_loop runs under a forked RNG: the caller's torch RNG continues as if nothing ran."
    net = _net()
    torch.manual_seed(7); want = torch.rand(3); torch.manual_seed(7)
    train_loop(net, _xent, _data(64, 0), steps=5, **KW)
    assert torch.equal(torch.rand(3), want)

def test_early_stop_restores_best_weights():
    "Flipped validation labels make val loss rise: training stops after `patience` bad validations, best weights kept."
    net, tr, va = _net(), _data(200, 0), _data(100, 1, flip=True)
    h = train_loop(net, _xent, tr, va, steps=500, lr=1e-2, batch_size=32, patience=3, log_every=5, **KW)
    assert h.attrs["stopped_early"] and len(h) < 100 and h.step.iloc[-1] < 500
    assert h.attrs["best_step"] == h.step[h.val_loss.idxmin()] and len(h) == h.index[h.val_loss.idxmin()] + 1 + 3
    net.eval()
    with torch.no_grad(): assert F.cross_entropy(net(va[0]), va[1]).item() == pytest.approx(h.val_loss.min(), abs=1e-6)

def test_no_patience_keeps_last_weights_and_mode():
    "Without patience the last weights stay; the model's train/eval mode is restored."
    net = _net().eval()
    h = train_loop(net, _xent, _data(64, 0), _data(32, 1), steps=12, log_every=5, **KW)
    assert h.step.tolist() == [5, 10, 12] and not net.training and not h.attrs["stopped_early"]

@pytest.mark.parametrize("kind", ["tuple", "dataset", "loader"])
def test_epochs_count_steps_for_each_data_kind(kind):
    "epochs=2 over 10 examples in batches of 4 is 6 steps, whatever the data kind."
    x, y = _data(10, 0)
    data = {"tuple": (x, y), "dataset": TensorDataset(x, y), "loader": DataLoader(TensorDataset(x, y), batch_size=4)}[kind]
    h = train_loop(_net(), _xent, data, epochs=2, batch_size=4, log_every=1, **KW)
    assert h.step.tolist() == list(range(1, 7))

def test_tensor_data_and_sgd_step_by_hand():
    "A plain tensor is batched as tensors; one SGD step on (x.w)^2 moves w by -lr * 2 x (x.w) / n."
    x = torch.tensor([[1., 2.], [3., -1.]])
    m = nn.Linear(2, 1, bias=False); nn.init.ones_(m.weight)
    train_loop(m, lambda m, b: (m(b) ** 2).mean(), x, steps=1, lr=0.5, optimizer="sgd", batch_size=2, **KW)
    grad = (2 * x * (x @ torch.ones(2))[:, None]).mean(0)         # (2*3*(1,2) + 2*2*(3,-1)) / 2 = (9, 4)
    assert torch.allclose(m.weight[0], torch.ones(2) - 0.5 * grad)

@pytest.mark.parametrize("kw,err,contains", [
    (dict(steps=None), GcavInputError, "exactly one of steps and epochs"),
    (dict(epochs=1), GcavInputError, "exactly one of steps and epochs"),
    (dict(steps=0), GcavInputError, "steps must be a positive int"),
    (dict(lr=-1.0), GcavInputError, "lr must be"),
    (dict(lr=math.nan), GcavInputError, "lr must be"),
    (dict(batch_size=2.5), GcavInputError, "batch_size"),
    (dict(log_every=0), GcavInputError, "log_every"),
    (dict(patience=2), GcavInputError, "give val_data"),
    (dict(patience=0, val_data=_data(8, 1)), GcavInputError, "patience"),
    (dict(grad_clip=0), GcavInputError, "grad_clip"),
    (dict(seed="0"), GcavInputError, "seed"),
    (dict(optimizer="rmsprop"), GcavInputError, "optimizer='rmsprop'"),
    (dict(num_threads=0), GcavInputError, "num_threads"),
    (dict(train_data=(torch.zeros(4, 4), torch.zeros(3))), GcavInputError, "different numbers of rows"),
    (dict(train_data=torch.zeros(0, 4)), GcavInputError, "train_data is empty"),
    (dict(val_data=torch.zeros(0, 4)), GcavInputError, "val_data is empty"),
    (dict(train_data=[[1.0, 2.0]]), TypeError, "data must be"),
    (dict(loss_fn=None), TypeError, "loss_fn"),
    (dict(model=nn.ReLU()), GcavInputError, "no trainable parameters"),
])
def test_bad_arguments_fail_before_the_first_step(kw, err, contains):
    "Every bad argument fails with its name in the message, before loss_fn is ever called."
    calls = []
    def loss_fn(m, b): calls.append(1); return _xent(m, b)
    args = dict(model=_net(), loss_fn=loss_fn, train_data=_data(16, 0), steps=3, progress=False) | kw
    with pytest.raises(err) as e: train_loop(**args)
    assert contains in str(e.value) and calls == []

def test_nan_loss_names_the_step():
    "A loss that becomes NaN stops training with the step number."
    n = {"i": 0}
    def loss_fn(m, b):
        n["i"] += 1
        return _xent(m, b) * (math.nan if n["i"] == 3 else 1.0)
    with pytest.raises(FloatingPointError, match="at step 3"): train_loop(_net(), loss_fn, _data(64, 0), steps=5, batch_size=8, **KW)
