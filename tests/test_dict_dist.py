"""train_sae data-parallel over torch.distributed (2 CPU processes, gloo): each rank trains on its own shard, gradients are
all-reduced; the result equals one process trained on the union of the ranks' batches, step by step."""
import os, tempfile
from pathlib import Path
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

B, STEPS, D, M = 64, 40, 16, 48

def _worker(rank, world, init, shards, kw, out):
    "One rank: join the group, train on its shard in stored order, rank 0 saves the weights."
    torch.set_num_threads(1)
    from gcav_nb.dictionaries.core import train_sae
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        sae, hist = train_sae(shards[rank], batch_size=B, training_tokens=B * STEPS, shuffle=False, progress=False, **kw)
        if rank == 0: torch.save({k: v.clone() for k, v in sae.state_dict().items()}, out)
    finally: dist.destroy_process_group()

def interleave(shards):
    "The one-process data whose batches of 2B rows are rank 0's batch then rank 1's, step by step."
    return torch.cat([torch.cat([s[i:i + B] for s in shards]) for i in range(0, len(shards[0]), B)])

@pytest.mark.parametrize("kw", [dict(architecture="standard", l1_coefficient=2.0),
                                dict(architecture="topk", k=4, dead_feature_window=10**6)], ids=["standard", "topk"])
def test_two_gloo_ranks_equal_one_process(kw):
    from gcav_nb.dictionaries.core import train_sae
    g = torch.Generator().manual_seed(0)
    shards = [torch.randn(B * 10, D, generator=g) * (1 + r) for r in range(2)]          # the ranks see different data
    kw = dict(kw, d_sae=M, lr=3e-3, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rank0.pt"
        mp.spawn(_worker, args=(2, f"file://{tmp}/rendezvous", shards, kw, str(out)), nprocs=2, join=True)
        ddp = torch.load(out)
    one, _ = train_sae(interleave(shards), batch_size=2 * B, training_tokens=2 * B * STEPS, shuffle=False, progress=False, **kw)
    alone, _ = train_sae(shards[0], batch_size=B, training_tokens=B * STEPS, shuffle=False, progress=False, **kw)
    for k, v in one.state_dict().items():
        torch.testing.assert_close(ddp[k], v, rtol=1e-4, atol=1e-5, msg=lambda m: f"{k}: {m}")
    assert max(float((alone.state_dict()[k] - v).abs().max()) for k, v in one.state_dict().items()) > 1e-3   # rank 0 alone differs: the sync matters
