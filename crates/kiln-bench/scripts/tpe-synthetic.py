#!/usr/bin/env python3
"""Optuna's TPE on the synthetic objective of `cargo run --release -p kiln-tune --example
tpe_synthetic -- N`: a deterministic function shaped like the digits study (log rate best at
1e-2, two layers, dropout 0.4, batch 16), 30 trials, seeds 1..N; prints the median and mean best.
The two side by side compare the samplers without training noise.

    ~/torchenv/bin/python crates/kiln-bench/scripts/tpe-synthetic.py N
"""
import math, sys, statistics, optuna
optuna.logging.set_verbosity(optuna.logging.WARNING)
def f(lr, hidden, dropout, bs):
    return (math.log10(lr) + 2.0) ** 2 + {"16": 0.6, "64": 0.3, "128,64": 0.0}[hidden] + 2.0 * (dropout - 0.4) ** 2 + {"16": 0.0, "32": 0.05, "64": 0.1}[bs]
bests = []
for seed in range(1, int(sys.argv[1]) + 1):
    s = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=seed))
    s.optimize(lambda t: f(t.suggest_float("lr", 1e-4, 3e-1, log=True), t.suggest_categorical("hidden", ["16", "64", "128,64"]), t.suggest_float("dropout", 0.0, 0.5), t.suggest_categorical("batch-size", ["16", "32", "64"])), n_trials=30)
    bests.append(s.best_value)
print("optuna median best %.4f mean %.4f" % (statistics.median(bests), statistics.mean(bests)))
