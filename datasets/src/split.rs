use rand::{SeedableRng, rngs::StdRng, seq::SliceRandom};

use crate::{Data, DataError};

/// Two disjoint parts of one dataset.
#[derive(Debug, Clone)]
pub struct Split {
    /// The larger part, `1 - fraction` of the samples.
    pub first: Data,
    /// The `fraction` part: a validation or test set.
    pub second: Data,
}

/// Splits `data` into two disjoint parts, seeded: `fraction` of the samples go to
/// [`Split::second`].
///
/// For classification the split is stratified: each class is divided in the same ratio, so both
/// parts keep the class balance of the whole (as scikit-learn's `train_test_split(stratify=y)`).
/// `round(n * fraction)` samples go to the second part in all, shared out among the classes by
/// largest remainders (rounding each class on its own would send 100 classes of 2 samples at
/// 0.2 nowhere). Every class keeps at least one sample in the first part: a class of one sample
/// is not split and stays there whole. Samples are shuffled within each part.
pub fn split(data: &Data, fraction: f64, seed: u64) -> Result<Split, DataError> {
    if !(fraction > 0.0 && fraction < 1.0) {
        return Err(DataError::InvalidFraction(fraction));
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let groups: Vec<Vec<usize>> = match data.y.labels() {
        Some(labels) => {
            let mut groups = vec![Vec::new(); data.y.width()];
            labels
                .iter()
                .enumerate()
                .for_each(|(i, &l)| groups[l].push(i));
            groups
        }
        None => vec![(0..data.len()).collect()],
    };

    let mut groups = groups;
    for group in &mut groups {
        group.shuffle(&mut rng);
    }
    let sizes: Vec<usize> = groups.iter().map(Vec::len).collect();
    let (mut first, mut second) = (Vec::new(), Vec::new());
    for (group, n_second) in groups.iter().zip(shares(&sizes, fraction)) {
        second.extend_from_slice(&group[..n_second]);
        first.extend_from_slice(&group[n_second..]);
    }
    if first.is_empty() || second.is_empty() {
        return Err(DataError::SplitTooSmall {
            n: data.len(),
            fraction,
        });
    }
    first.shuffle(&mut rng);
    second.shuffle(&mut rng);
    Ok(Split {
        first: data.subset(&first),
        second: data.subset(&second),
    })
}

/// How many samples of each group go to the second part: `round(total * fraction)` in all,
/// each group's `size * fraction` rounded down, then one more to the groups with the largest
/// remainders (the first group on ties); a group keeps at least one sample when it has more
/// than one group beside it (one group alone is split as asked).
fn shares(sizes: &[usize], fraction: f64) -> Vec<usize> {
    let total: usize = sizes.iter().sum();
    let target = (total as f64 * fraction).round() as usize;
    let cap = |size: usize| {
        if sizes.len() > 1 {
            size.saturating_sub(1)
        } else {
            size
        }
    };
    let mut counts: Vec<usize> = sizes
        .iter()
        .map(|&size| ((size as f64 * fraction).floor() as usize).min(cap(size)))
        .collect();
    let mut order: Vec<usize> = (0..sizes.len()).collect();
    let remainder = |g: usize| sizes[g] as f64 * fraction - counts[g] as f64;
    order.sort_by(|&a, &b| remainder(b).total_cmp(&remainder(a)).then(a.cmp(&b)));
    let mut left = target.saturating_sub(counts.iter().sum());
    for g in order {
        if left == 0 {
            break;
        }
        if counts[g] < cap(sizes[g]) {
            counts[g] += 1;
            left -= 1;
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Targets;

    fn imbalanced() -> Data {
        // 90 samples of class 0, 10 of class 1; the feature is the sample's index.
        let labels: Vec<usize> = (0..100).map(|i| usize::from(i >= 90)).collect();
        Data::new(
            (0..100).map(|i| i as f32).collect(),
            vec![1],
            Targets::Classes {
                labels,
                names: vec!["a".into(), "b".into()],
            },
        )
        .unwrap()
    }

    #[test]
    fn stratified_split_keeps_class_ratios() {
        let s = split(&imbalanced(), 0.2, 7).unwrap();
        assert_eq!(s.second.class_counts(), vec![18, 2]);
        assert_eq!(s.first.class_counts(), vec![72, 8]);
    }

    #[test]
    fn parts_are_disjoint_and_cover_everything() {
        let s = split(&imbalanced(), 0.3, 1).unwrap();
        let mut all: Vec<f32> = s.first.x.iter().chain(&s.second.x).copied().collect();
        all.sort_by(f32::total_cmp);
        assert_eq!(all, (0..100).map(|i| i as f32).collect::<Vec<_>>());
    }

    #[test]
    fn same_seed_same_split_other_seed_other_split() {
        let d = imbalanced();
        assert_eq!(
            split(&d, 0.2, 3).unwrap().second,
            split(&d, 0.2, 3).unwrap().second
        );
        assert_ne!(
            split(&d, 0.2, 3).unwrap().second,
            split(&d, 0.2, 4).unwrap().second
        );
    }

    fn classes(sizes: &[usize]) -> Data {
        let labels: Vec<usize> = sizes
            .iter()
            .enumerate()
            .flat_map(|(c, &n)| std::iter::repeat_n(c, n))
            .collect();
        let n = labels.len();
        Data::new(
            (0..n).map(|i| i as f32).collect(),
            vec![1],
            Targets::Classes {
                labels,
                names: (0..sizes.len()).map(|c| c.to_string()).collect(),
            },
        )
        .unwrap()
    }

    /// 100 classes of 2 samples at 0.2: 40 samples held out (one from each of 40 classes),
    /// where rounding each class alone held out none and failed.
    #[test]
    fn small_classes_are_rounded_globally() {
        let s = split(&classes(&[2; 100]), 0.2, 0).unwrap();
        assert_eq!(s.second.len(), 40);
        assert!(s.second.class_counts().iter().all(|&c| c <= 1));
        assert!(s.first.class_counts().iter().all(|&c| c >= 1));
    }

    /// A class of one sample stays whole in the first part; the others split by largest
    /// remainders to round(n * fraction) in all.
    #[test]
    fn a_one_sample_class_stays_in_the_first_part() {
        let s = split(&classes(&[1, 7, 7]), 0.3, 0).unwrap();
        // 15 * 0.3 = 4.5 -> 5 held out (rounded half away from zero): 2.1 -> 2 and 2, then one
        // more to the first of the tied remainders, class 1.
        assert_eq!(s.second.class_counts(), vec![0, 3, 2]);
        assert_eq!(s.first.class_counts(), vec![1, 4, 5]);
    }

    #[test]
    fn bad_fraction_is_an_error() {
        assert!(matches!(
            split(&imbalanced(), 1.0, 0),
            Err(DataError::InvalidFraction(_))
        ));
    }
}
