"""Reads a run's TensorBoard event files with TensorBoard's own EventAccumulator and prints
what it found as JSON: every scalar series and every histogram's (step, count, sum)."""
import json
import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

acc = EventAccumulator(sys.argv[1], size_guidance={"scalars": 0, "histograms": 0})
acc.Reload()
tags = acc.Tags()
print(json.dumps({
    "scalars": {t: [[e.step, e.value] for e in acc.Scalars(t)] for t in tags["scalars"]},
    "histograms": {
        t: [[e.step, e.histogram_value.num, e.histogram_value.sum] for e in acc.Histograms(t)]
        for t in tags["histograms"]
    },
}))
