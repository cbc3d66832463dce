//! kiln's TPE on a synthetic objective shaped like the digits study (no training): the best of
//! 30 trials over seeds 1..N, to set beside Optuna's on the same function
//! (`crates/kiln-bench/scripts/tpe-synthetic.py N`).
//!
//!     cargo run --release -p kiln-tune --example tpe_synthetic -- 100
use kiln_tune::{SearchSpace, Tuner};

fn main() {
    let seeds: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    let mut bests = Vec::new();
    for seed in 1..=seeds {
        let space = SearchSpace::new()
            .log_float("lr", 1e-4, 3e-1)
            .choice("hidden", &["16", "64", "128,64"])
            .float("dropout", 0.0, 0.5)
            .choice("batch-size", &["16", "32", "64"]);
        let study = Tuner::new(space, "loss")
            .seed(seed)
            .trials(30)
            .optimize(|t| {
                let hidden = match t.choice("hidden").as_str() {
                    "16" => 0.6,
                    "64" => 0.3,
                    _ => 0.0,
                };
                let bs = match t.choice("batch-size").as_str() {
                    "16" => 0.0,
                    "32" => 0.05,
                    _ => 0.1,
                };
                Ok::<f64, String>(
                    (t.float("lr").log10() + 2.0).powi(2)
                        + hidden
                        + 2.0 * (t.float("dropout") - 0.4).powi(2)
                        + bs,
                )
            })
            .unwrap();
        bests.push(study.best().unwrap().value.unwrap());
    }
    bests.sort_by(f64::total_cmp);
    let mean = bests.iter().sum::<f64>() / bests.len() as f64;
    println!(
        "kiln median best {:.4} mean {:.4}",
        bests[bests.len() / 2],
        mean
    );
}
