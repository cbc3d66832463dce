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
/// Samples are shuffled within each part.
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

    let (mut first, mut second) = (Vec::new(), Vec::new());
    for mut group in groups {
        group.shuffle(&mut rng);
        let n_second = (group.len() as f64 * fraction).round() as usize;
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

    #[test]
    fn bad_fraction_is_an_error() {
        assert!(matches!(
            split(&imbalanced(), 1.0, 0),
            Err(DataError::InvalidFraction(_))
        ));
    }
}
