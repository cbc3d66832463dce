//! Dropout's masks repeat with the backend's seed. In a test binary of its own: the backend's
//! generator is shared by every thread of a process, and a test drawing from it between the
//! seed and the mask (as the crate's other tests do, run beside this one) changed the mask.

use burn::tensor::{Device, Tensor};
use kiln_common::{Dropout, DropoutConfig};

fn mask_of(dropout: &Dropout, n: usize, device: &Device) -> Vec<f32> {
    dropout
        .forward(Tensor::<1>::ones([n], device))
        .into_data()
        .try_to_vec()
        .unwrap()
}

#[test]
fn each_call_draws_a_new_mask_and_the_seed_repeats_them() {
    let device = Device::default().autodiff();
    let dropout = DropoutConfig::new(0.5).init();
    device.seed(7);
    let first = mask_of(&dropout, 1_000, &device);
    let second = mask_of(&dropout, 1_000, &device);
    assert_ne!(first, second);
    device.seed(7);
    assert_eq!(mask_of(&dropout, 1_000, &device), first);
    device.seed(8);
    assert_ne!(
        mask_of(&dropout, 1_000, &device),
        first,
        "another seed, another mask"
    );
}
