//! FLOP per training sample of the benchmarked models, counted from their layer shapes, and the
//! machine's fp32 peak, so that a throughput reads as a distance to the physical limit.
//!
//! Counting convention: products only (dense, convolution, recurrent and attention products; a
//! multiply-add is 2 FLOP); activations, normalisation, softmax, pooling and the optimiser are
//! left out. A training step costs 3 forward passes: the backward pass of a product is two
//! products of the same size (the gradient of its input and of its weight).

/// 3 x the forward FLOP of one sample.
const fn training(forward: u64) -> f64 {
    (3 * forward) as f64
}

/// Forward FLOP of a dense layer `d_in -> d_out` on one row.
const fn dense(d_in: u64, d_out: u64) -> u64 {
    2 * d_in * d_out
}

/// Forward FLOP of a `k x k` convolution `c_in -> c_out` with `h x w` outputs, one image.
const fn conv(h: u64, w: u64, c_in: u64, c_out: u64, k: u64) -> u64 {
    2 * h * w * c_out * (k * k * c_in)
}

/// MLP 784-128-64-10.
pub const MLP: f64 = training(dense(784, 128) + dense(128, 64) + dense(64, 10));

/// The `mnist` CNN preset: conv 1->32 3x3 same on 28x28, max-pool 2, conv 32->64 3x3 same on
/// 14x14, max-pool 2, dense 3136->128->10.
pub const CNN: f64 = training(
    conv(28, 28, 1, 32, 3) + conv(14, 14, 32, 64, 3) + dense(64 * 7 * 7, 128) + dense(128, 10),
);

/// LSTM(28 -> 128) over 28 steps (4 gates, input and recurrent products), last step -> 10.
pub const LSTM: f64 = training(28 * dense(28 + 128, 4 * 128) + dense(128, 10));

/// Length 200, d_model 32, one encoder block (2 heads, d_ff 32), 2 classes: the query, key and
/// value projections, the scores and the weighted sum (L x L x d_model each, over all heads),
/// the output projection, the feed-forward pair and the head.
pub const TRANSFORMER: f64 = {
    let (l, d, d_ff) = (200, 32, 32);
    training(
        l * 3 * dense(d, d)
            + 2 * (2 * l * l * d)
            + l * dense(d, d)
            + l * (dense(d, d_ff) + dense(d_ff, d))
            + dense(d, 2),
    )
};

/// The machine's fp32 peak in GFLOP/s: cores x FLOP per cycle x clock. FLOP per cycle from the
/// CPU's features: two fused multiply-add pipes of the widest vector it runs at full rate
/// (AVX-512 on Intel and on AMD from Zen 5: 64; AVX2 + FMA, and AVX-512 on Zen 4, which splits
/// each 512-bit operation in two 256-bit halves: 32; otherwise SSE: 8). The clock is the one
/// `/proc/cpuinfo` reports (the base clock in a virtual machine, which may boost above it); the
/// cores are those this process may use (on a virtual machine they may be hyper-threads of
/// fewer physical cores, which would halve the peak).
pub fn peak_gflops() -> f64 {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        cpuinfo
            .lines()
            .find(|line| line.split(':').next().is_some_and(|k| k.trim() == name))
            .and_then(|line| line.split(':').nth(1))
            .map(|v| v.trim().to_string())
    };
    let ghz = field("cpu MHz")
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(2.0, |mhz| mhz / 1000.0);
    cores
        * flop_per_cycle(
            &field("vendor_id").unwrap_or_default(),
            field("cpu family")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
        )
        * ghz
}

fn flop_per_cycle(vendor: &str, family: u32) -> f64 {
    #[cfg(target_arch = "x86_64")]
    {
        let full_width_avx512 = vendor != "AuthenticAMD" || family >= 26;
        if std::arch::is_x86_feature_detected!("avx512f") && full_width_avx512 {
            return 64.0;
        }
        if std::arch::is_x86_feature_detected!("fma") {
            return 32.0;
        }
    }
    let _ = (vendor, family);
    8.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_match_the_layer_shapes_by_hand() {
        // 784*128 + 128*64 + 64*10 = 109,184 multiply-adds forward.
        assert_eq!(MLP, 3.0 * 2.0 * 109_184.0);
        // 28*28*32*9 + 14*14*64*288 + 3136*128 + 128*10 = 4,241,152 multiply-adds forward.
        assert_eq!(CNN, 3.0 * 2.0 * 4_241_152.0);
        // 28 steps of 156*512, then 128*10: 2,237,696 multiply-adds forward.
        assert_eq!(LSTM, 3.0 * 2.0 * 2_237_696.0);
        // 200*(3*1024 + 1024 + 2*1024) + 2*200*200*32 + 64 = 3,788,864 multiply-adds forward.
        assert_eq!(TRANSFORMER, 3.0 * 2.0 * 3_788_864.0);
    }

    #[test]
    fn peak_is_cores_times_flop_per_cycle_times_clock() {
        let peak = peak_gflops();
        let cores = std::thread::available_parallelism().unwrap().get() as f64;
        // Between 8 FLOP per cycle at 0.5 GHz and 64 at 6 GHz, per core.
        assert!(peak >= cores * 4.0 && peak <= cores * 384.0, "{peak}");
        assert_eq!(flop_per_cycle("AuthenticAMD", 25) % 8.0, 0.0);
    }
}
