#!/usr/bin/env python3
"""Optuna's TPE (its default `TPESampler`, seeded) on the deterministic functions of `cargo run
--release -p kiln-tune --example tpe_synthetic -- N`: the best of TRIALS (default 30) trials over
seeds 1..N, one JSON line per function with the median and mean best. Set beside the example's
lines, it compares the samplers without training noise.

    ~/torchenv/bin/python crates/kiln-bench/scripts/tpe-synthetic.py N [FUNCTION...]

Needs optuna (pip install optuna) in the Python that runs it; kiln itself does not.
"""
import json
import math
import os
import statistics
import sys

import optuna


def digits(t):
    hidden = {"16": 0.6, "64": 0.3, "128,64": 0.0}[t.suggest_categorical("hidden", ["16", "64", "128,64"])]
    lr = t.suggest_float("lr", 1e-4, 3e-1, log=True)
    dropout = t.suggest_float("dropout", 0.0, 0.5)
    batch = {"16": 0.0, "32": 0.05, "64": 0.1}[t.suggest_categorical("batch-size", ["16", "32", "64"])]
    return (math.log10(lr) + 2.0) ** 2 + hidden + 2.0 * (dropout - 0.4) ** 2 + batch


def series(t):
    lr = t.suggest_float("lr", 1e-4, 3e-1, log=True)
    hidden = float(t.suggest_categorical("hidden", ["8", "16", "32", "64"]))
    layers = t.suggest_int("layers", 1, 2)
    batch = float(t.suggest_categorical("batch-size", ["16", "32", "64"]))
    best_lr = -2.5 + 0.5 * math.log2(batch / 16.0) - 0.1 * math.log2(hidden / 8.0)
    return (math.log10(lr) - best_lr) ** 2 + 0.05 * math.log2(hidden / 32.0) ** 2 + 0.1 * (layers - 1)


A = [[10.0, 3.0, 17.0, 3.5, 1.7, 8.0], [0.05, 10.0, 17.0, 0.1, 8.0, 14.0],
     [3.0, 3.5, 1.7, 10.0, 17.0, 8.0], [17.0, 8.0, 0.05, 10.0, 0.1, 14.0]]
P = [[0.1312, 0.1696, 0.5569, 0.0124, 0.8283, 0.5886], [0.2329, 0.4135, 0.8307, 0.3736, 0.1004, 0.9991],
     [0.2348, 0.1451, 0.3522, 0.2883, 0.3047, 0.6650], [0.4047, 0.8828, 0.8732, 0.5743, 0.1091, 0.0381]]
ALPHA = [1.0, 1.2, 3.0, 3.2]


def hartmann6(t):
    x = [t.suggest_float("x%d" % i, 0.0, 1.0) for i in range(6)]
    return 3.32237 - sum(ALPHA[i] * math.exp(-sum(A[i][j] * (x[j] - P[i][j]) ** 2 for j in range(6)))
                         for i in range(4))


def branin(t):
    x = t.suggest_float("x", -5.0, 10.0)
    y = t.suggest_float("y", 0.0, 15.0)
    return ((y - 5.1 / (4 * math.pi ** 2) * x * x + 5 / math.pi * x - 6) ** 2
            + 10 * (1 - 1 / (8 * math.pi)) * math.cos(x) + 10 - 0.397887)


FUNCTIONS = {"digits": digits, "series": series, "hartmann6": hartmann6, "branin": branin}

optuna.logging.set_verbosity(optuna.logging.WARNING)
seeds = int(sys.argv[1]) if len(sys.argv) > 1 else 100
trials = int(os.environ.get("TRIALS", "30"))
for name in sys.argv[2:] or list(FUNCTIONS):
    bests = []
    for seed in range(1, seeds + 1):
        study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=seed))
        study.optimize(FUNCTIONS[name], n_trials=trials)
        bests.append(study.best_value)
    print(json.dumps({"function": name, "trials": trials, "seeds": seeds, "optuna": optuna.__version__,
                      "optuna_median": round(statistics.median(bests), 4),
                      "optuna_mean": round(statistics.mean(bests), 4)}), flush=True)
