"""PyTorch's time to accuracy on real MNIST, in f32 or under CPU bf16 autocast.

    python3 torch_time_to_accuracy.py PEERS MNIST_DIR [mlp|cnn] [--precision f32|bf16]
                                      [--target 0.99] [--max-epochs 12]

The recipe of `PEERS/torch_mnist_time_to_accuracy.py` (its data loading and nets, imported from
PEERS: pixels in [0, 1], Adam lr 1e-3, batch 64, shuffled each epoch, test accuracy after each
epoch, training seconds only), with `--precision bf16` running each step's forward pass and loss
under `torch.autocast("cpu", dtype=torch.bfloat16)` as `torch_reference.py --precision bf16`
does. One JSON line per epoch.
"""
import argparse
import json
import sys
import time


def main():
    p = argparse.ArgumentParser()
    p.add_argument("peers")
    p.add_argument("mnist_dir")
    p.add_argument("model", nargs="?", default="cnn")
    p.add_argument("--precision", choices=["f32", "bf16"], default="f32")
    p.add_argument("--target", type=float, default=None)
    p.add_argument("--max-epochs", type=int, default=12)
    a = p.parse_args()
    sys.path.insert(0, a.peers)
    import torch
    import torch.nn as nn
    from torch_mnist_time_to_accuracy import load
    from torch_reference import Cnn, Mlp

    target = a.target or (0.99 if a.model == "cnn" else 0.975)
    torch.manual_seed(0)
    xtr, ytr = load(a.mnist_dir, "train")
    xte, yte = load(a.mnist_dir, "t10k")
    shape = (-1, 1, 28, 28) if a.model == "cnn" else (-1, 784)
    xtr, xte = xtr.reshape(shape), xte.reshape(shape)
    model = Cnn() if a.model == "cnn" else Mlp()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    bf16 = a.precision == "bf16"
    trained = 0.0
    for epoch in range(1, a.max_epochs + 1):
        model.train()
        perm = torch.randperm(xtr.shape[0])
        start = time.perf_counter()
        for i in range(0, xtr.shape[0], 64):
            idx_b = perm[i:i + 64]
            opt.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = loss_fn(model(xtr[idx_b]), ytr[idx_b])
            loss.backward()
            opt.step()
        trained += time.perf_counter() - start
        model.eval()
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            acc = (model(xte).argmax(1) == yte).float().mean().item()
        print(json.dumps({"framework": f"torch-{torch.__version__}", "model": a.model,
                          "precision": a.precision, "epoch": epoch,
                          "train_seconds": round(trained, 1), "test_accuracy": round(acc, 4)}),
              flush=True)
        if acc >= target:
            break


if __name__ == "__main__":
    main()
