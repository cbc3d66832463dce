#!/usr/bin/env python3
"""kiln tune against Optuna on the same search space and budget.

For each task and seed: `kiln tune` (TPE, 30 trials) and an Optuna study (its default
TPESampler, seeded, 30 trials) whose every trial runs the same `kiln train` through its command
line and reads the best val_loss from the run's history.csv. Both minimise val_loss over the
same four hyperparameters, each trial 27 epochs on a cosine schedule without early stopping (as
tune.sh). Prints one JSON line per study and one per task with the medians.

    ~/torchenv/bin/python crates/kiln-bench/scripts/against-optuna.py KILN [SEEDS...]

TASKS (default: all of them: digits house-prices airline us-births us-births-series
sequential-mnist) picks the tasks; ONLY=kiln or ONLY=optuna runs one side (the other prints
NaN); the us-births tasks need `datasets/fetch.sh us-births`.

Needs optuna (pip install optuna) in the Python that runs it; kiln itself does not.
"""
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile

ONLY = os.environ.get("ONLY", "")
if ONLY != "kiln":
    import optuna

TRIALS = int(os.environ.get("TRIALS", "30"))
# The daily US births (`datasets/fetch.sh us-births`).
BIRTHS = os.path.join(os.environ.get("KILN_DATA", os.path.expanduser("~/.cache/kiln")),
                      "us-births", "births.csv")

# Each task: its fixed flags and its space, as kiln tune ranges and as Optuna suggestions.
TASKS = {
    "digits": (["--dataset", "digits"], [
        ("lr", ("log", 1e-4, 3e-1)), ("hidden", ("cat", ["16", "64", "128,64"])),
        ("dropout", ("float", 0.0, 0.5)), ("batch-size", ("cat", ["16", "32", "64"]))]),
    "house-prices": (["--dataset", "house-prices"], [
        ("lr", ("log", 1e-4, 3e-1)), ("hidden", ("cat", ["16", "64", "128,64"])),
        ("dropout", ("float", 0.0, 0.5)), ("batch-size", ("cat", ["16", "32", "64"]))]),
    "airline": (["--dataset", "airline", "--model", "lstm"], [
        ("lr", ("log", 1e-4, 3e-1)), ("hidden", ("cat", ["8", "16", "32", "64"])),
        ("layers", ("int", 1, 2)), ("batch-size", ("cat", ["8", "16", "32"]))]),
    "us-births": (["--dataset", "csv:" + BIRTHS, "--target", "births", "--task", "regression"], [
        ("lr", ("log", 1e-4, 3e-1)), ("hidden", ("cat", ["16", "64", "128,64"])),
        ("dropout", ("float", 0.0, 0.5)), ("batch-size", ("cat", ["16", "32", "64"]))]),
    "us-births-series": (["--dataset", "series-csv:" + BIRTHS, "--column", "births",
                          "--model", "lstm"], [
        ("lr", ("log", 1e-4, 3e-1)), ("hidden", ("cat", ["8", "16", "32", "64"])),
        ("layers", ("int", 1, 2)), ("batch-size", ("cat", ["16", "32", "64"]))]),
    "sequential-mnist": (["--dataset", "sequential-mnist", "--train-samples", "3000",
                          "--model", "lstm"], [
        ("lr", ("log", 1e-4, 3e-1)), ("hidden", ("cat", ["8", "16", "32", "64"])),
        ("layers", ("int", 1, 2)), ("batch-size", ("cat", ["16", "32", "64"]))]),
}
FIXED = ["--epochs", "27", "--patience", "0", "--lr-schedule", "cosine"]


def kiln_range(kind):
    k = kind[0]
    if k == "log":
        return "%r..%r:log" % (kind[1], kind[2])
    if k in ("float", "int"):
        return "%r..%r" % (kind[1], kind[2])
    return "|".join(kind[1])


def best_val_loss(run):
    with open(os.path.join(run, "history.csv")) as f:
        return min(float(r["val_loss"]) for r in csv.DictReader(f))


def kiln_study(kiln, task, seed, tmp):
    fixed, space = TASKS[task]
    flags = [x for name, kind in space for x in ("--" + name, kiln_range(kind))]
    out = os.path.join(tmp, "kiln-%s-%d" % (task, seed))
    subprocess.run([kiln, "tune", "--quiet", "--dir", out, "--study-seed", str(seed),
                    "--trials", str(TRIALS), "--sampler", "tpe"] + fixed + flags + FIXED,
                   check=True, stdout=subprocess.DEVNULL)
    with open(os.path.join(out, "tune.csv")) as f:
        return min(float(r["value"]) for r in csv.DictReader(f) if r["state"] == "complete")


def optuna_study(kiln, task, seed, tmp):
    fixed, space = TASKS[task]

    def objective(trial):
        flags = []
        for name, kind in space:
            if kind[0] == "log":
                v = trial.suggest_float(name, kind[1], kind[2], log=True)
            elif kind[0] == "float":
                v = trial.suggest_float(name, kind[1], kind[2])
            elif kind[0] == "int":
                v = trial.suggest_int(name, kind[1], kind[2])
            else:
                v = trial.suggest_categorical(name, kind[1])
            flags += ["--" + name, repr(v) if isinstance(v, float) else str(v)]
        run = os.path.join(tmp, "optuna-%s-%d-%d" % (task, seed, trial.number))
        subprocess.run([kiln, "train", "--quiet", "--out", run] + fixed + flags + FIXED,
                       check=True, stdout=subprocess.DEVNULL)
        return best_val_loss(run)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="minimize",
                                sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(objective, n_trials=TRIALS)
    return study.best_value


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    kiln = os.path.realpath(sys.argv[1])
    seeds = [int(s) for s in sys.argv[2:]] or [1, 2, 3]
    with tempfile.TemporaryDirectory() as tmp:
        for task in os.environ.get("TASKS", " ".join(TASKS)).split():
            ours, theirs = [], []
            for seed in seeds:
                k = kiln_study(kiln, task, seed, tmp) if ONLY != "optuna" else float("nan")
                o = optuna_study(kiln, task, seed, tmp) if ONLY != "kiln" else float("nan")
                ours.append(k)
                theirs.append(o)
                print(json.dumps({"task": task, "seed": seed, "kiln_tpe": k, "optuna_tpe": o}),
                      flush=True)
            if ONLY:
                continue
            print(json.dumps({"task": task, "trials": TRIALS, "optuna": optuna.__version__,
                              "median_kiln": statistics.median(ours),
                              "median_optuna": statistics.median(theirs),
                              "kiln_no_worse": statistics.median(ours) <= statistics.median(theirs)}),
                  flush=True)


if __name__ == "__main__":
    main()
