"""Benchmark: end-to-end SAE training throughput (tokens/s, activations included) of gcav_nb's pipeline vs sae-lens's own
`LanguageModelSAETrainingRunner`, the same config, measured in the same run.

Ours: `ActivationStore.build` over the token blocks (one forward per batch, stopped after the hook, shards on disk) +
`dictionaries.core.train_sae` on the stored rows (sae-lens's SAE class and `SAETrainer.step`). Theirs: the runner with
`override_model` = the same TransformerBridge and `override_dataset` = the same token blocks (a `datasets.Dataset` of
input_ids), collecting activations with `run_with_cache(stop_at_layer=...)` into its mixing buffer while it trains.
Same SAE (standard ReLU+L1, d_sae = 4 d, l1 5, input-norm scaling), same batch, lr, training tokens, BOS rows excluded
in both (`exclude_special_tokens=[bos]` for the runner). Model loading is outside both timings.
Figure `sae_training_vs_saelens` = ours tokens/s / sae-lens tokens/s (= sae-lens seconds / our seconds; > 1 is faster;
goal >= 1.0). Torch on 1 thread for both (the machine is shared; 2 threads were 2-4x slower under load here).
Sizes: ci: tiny-llama blocks.1.hook_resid_post, 8,192 tokens; cpu: SmolLM2-135M blocks.6.hook_resid_post, 32,768 tokens.
Usage: python bench/bench_sae.py [--size ci|cpu] [--repeats N]
"""
import argparse, logging, shutil, sys, tempfile, time
from pathlib import Path
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from _results import append_results  # noqa: E402  (bench/ is on sys.path when run as a script)
from gcav_nb.models import load_model
from gcav_nb.store import ActivationStore, token_blocks, corpus_documents
from gcav_nb.dictionaries.core import train_sae

SIZES = dict(ci=dict(model="tiny-llama", hook="blocks.1.hook_resid_post", n=8_192),
             cpu=dict(model="smollm2-135m", hook="blocks.6.hook_resid_post", n=32_768))
CTX, BATCH, LR, L1, EXPANSION, FWD_BATCH = 128, 512, 3e-4, 5.0, 4, 16

def ours(model, docs, hook, n, folder):
    "Store then train: seconds for the whole pipeline."
    t = time.perf_counter()
    st = ActivationStore.build(model, docs, hook, folder, ctx=CTX, n_tokens=n, batch_size=FWD_BATCH, prepend_bos=True, progress=False)
    train_sae(st, hook, "standard", d_sae=EXPANSION * st.d[hook], training_tokens=n, batch_size=BATCH, lr=LR, progress=False, l1_coefficient=L1)
    return time.perf_counter() - t

def saelens(model, blocks, hook, n, d, folder):
    "sae-lens's LLM runner on the same blocks: seconds for runner construction + run (activations included)."
    from datasets import Dataset
    from sae_lens import LanguageModelSAETrainingRunner, LanguageModelSAERunnerConfig, StandardTrainingSAEConfig, LoggingConfig
    logging.getLogger("sae_lens").setLevel(logging.ERROR)
    ds = Dataset.from_dict({"input_ids": blocks.tolist()})
    cfg = LanguageModelSAERunnerConfig(
        sae=StandardTrainingSAEConfig(d_in=d, d_sae=EXPANSION * d, l1_coefficient=L1, normalize_activations="expected_average_only_in"),
        model_name="bench-model", hook_name=hook, dataset_path="", is_dataset_tokenized=True, streaming=False, context_size=CTX,
        prepend_bos=True, training_tokens=n, train_batch_size_tokens=BATCH, store_batch_size_prompts=FWD_BATCH,
        lr=LR, lr_end=LR / 10, device="cpu",
        exclude_special_tokens=[int(model.tokenizer.bos_token_id)], n_batches_for_norm_estimate=20,
        logger=LoggingConfig(log_to_wandb=False), checkpoint_path=None, output_path=None, n_checkpoints=0, seed=0)
    t = time.perf_counter()
    LanguageModelSAETrainingRunner(cfg, override_dataset=ds, override_model=model).run()
    return time.perf_counter() - t

def main():
    ap = argparse.ArgumentParser(); ap.add_argument("--size", default="cpu", choices=list(SIZES)); ap.add_argument("--repeats", type=int, default=1)
    a = ap.parse_args(); s = SIZES[a.size]; torch.set_num_threads(1)
    model = load_model(s["model"], device="cpu"); docs = corpus_documents("brown")
    blocks = torch.stack(list(token_blocks(model, docs, ctx=CTX, n_tokens=s["n"], prepend_bos=True)))
    d = model.cfg.d_model; tmp = Path(tempfile.mkdtemp()); to, tr = [], []
    try:
        ours(model, docs, s["hook"], 4 * CTX * FWD_BATCH // 4, tmp/"warm")                    # warm-up (a few batches)
        for r in range(a.repeats):                                                           # interleaved
            to.append(ours(model, docs, s["hook"], s["n"], tmp/f"s{r}")); shutil.rmtree(tmp/f"s{r}")
            tr.append(saelens(model, blocks, s["hook"], s["n"], d, tmp/f"r{r}"))
            print(f"repeat {r}: ours {to[-1]:.1f} s ({s['n'] / to[-1]:,.0f} tok/s), sae-lens runner {tr[-1]:.1f} s ({s['n'] / tr[-1]:,.0f} tok/s)", flush=True)
    finally: shutil.rmtree(tmp, ignore_errors=True)
    o, r = min(to), min(tr); ratio = r / o
    append_results([["sae_training_vs_saelens", round(o, 3), f"sae-lens LanguageModelSAETrainingRunner ({s['model']}, {s['n']:,} tokens, same SAE config)",
                     round(r, 3), round(ratio, 3), ">= 1.0"]], a.size)
    print(f"tokens/s: ours {s['n'] / o:,.0f}, sae-lens {s['n'] / r:,.0f}")
    print(f"sae_training_vs_saelens: {ratio:.3g}x (goal >= 1.0)")

if __name__ == "__main__": main()
