#!/usr/bin/env python3
"""Replays successive halving on recorded random-search curves: Optuna's rule (a trial is
judged once, as it arrives at a rung; the first arrivals pass as the best of few) against Li
et al.'s ASHA (a trial that is not in its rung's best share pauses, and is promoted later when
worse arrivals bring it in), with random sampling and no training.

    python3 crates/kiln-bench/scripts/asha-replay.py TASK_DIR [MIN_EPOCHS]

TASK_DIR holds random-search studies of 27-epoch trials (`KEEP=DIR tune.sh`: DIR/TASK/random-*).
Each of 300 replays draws 30 of the recorded trials as a random search and takes its best
val_loss as the target, then runs each rule on trials drawn from all the recorded ones (with
replacement) for up to 810 epochs, and counts the epochs until the target is reached. Prints the
median share of 810 and how often it is within a third.
"""
import csv
import glob
import os
import random
import statistics
import sys

BUDGET, EPOCHS, ETA = 810, 27, 3


def curves(root):
    out = []
    for path in glob.glob(os.path.join(root, "random-*", "trials", "*", "history.csv")):
        with open(path) as f:
            values = [float(r["val_loss"]) for r in csv.DictReader(f)]
        if len(values) == EPOCHS:
            out.append(values)
    return out


def judged_on_arrival(pool, order, rungs):
    """Optuna's SuccessiveHalvingPruner: goes on if in the best 1/ETA (at least the best one)."""
    seen = {r: [] for r in rungs}
    spent, best, trace = 0, float("inf"), []
    for i in order:
        c = pool[i]
        for e in range(1, EPOCHS + 1):
            spent += 1
            best = min(best, c[e - 1])
            trace.append((spent, best))
            if spent >= BUDGET:
                return trace
            if e in seen:
                v = min(c[:e])
                ranked = sorted(seen[e] + [v])
                seen[e].append(v)
                if v > ranked[max(len(ranked) // ETA, 1) - 1]:
                    break
    return trace


def promoted(pool, order, rungs):
    """Li et al.'s ASHA: promote the best unpromoted trial in a rung's best 1/ETA, else start one."""
    rungs = rungs + [EPOCHS]
    members = {r: [] for r in rungs}
    gone_on = {r: set() for r in rungs}
    spent, best, trace = 0, float("inf"), []
    fresh = iter(order)
    while spent < BUDGET:
        job = None
        for k in range(len(rungs) - 2, -1, -1):
            r = rungs[k]
            for _, i in sorted(members[r])[: len(members[r]) // ETA]:
                if i not in gone_on[r]:
                    gone_on[r].add(i)
                    job = (i, r, rungs[k + 1])
                    break
            if job:
                break
        if job is None:
            i = next(fresh)
            job = (i, 0, rungs[0])
        i, start, end = job
        for e in range(start + 1, end + 1):
            spent += 1
            best = min(best, pool[i][e - 1])
            trace.append((spent, best))
            if spent >= BUDGET:
                return trace
        members[end].append((min(pool[i][:end]), i))
    return trace


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    pool = curves(sys.argv[1])
    min_epochs = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    rungs = [min_epochs * ETA**k for k in range(8) if min_epochs * ETA**k < EPOCHS]
    rng = random.Random(0)
    shares = {"judged on arrival": [], "paused and promoted": []}
    for _ in range(300):
        target = min(min(pool[i]) for i in rng.sample(range(len(pool)), 30))
        order = [rng.randrange(len(pool)) for _ in range(BUDGET)]
        for name, rule in [("judged on arrival", judged_on_arrival),
                           ("paused and promoted", promoted)]:
            hit = next((s for s, b in rule(pool, order, rungs) if b <= target), None)
            shares[name].append(hit / BUDGET if hit else float("inf"))
    print("%d curves, rungs %s" % (len(pool), rungs))
    for name, s in shares.items():
        print("%s: median share %.2f, within a third %.0f%%"
              % (name, statistics.median(s), 100 * sum(x <= 1 / 3 for x in s) / len(s)))


if __name__ == "__main__":
    main()
