//! Fewer labels: a data set cut to some of its classes and to a few labelled training samples,
//! seeded and stratified, for transfer-learning and few-label experiments.

use rand::{SeedableRng, rngs::StdRng, seq::SliceRandom};
use serde::{Deserialize, Serialize};

use crate::{Data, DataError, TextSet};

/// Which classes and how many labelled training samples to keep. The default keeps everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelSubset {
    /// The classes kept, comma-separated class names or ranges of class indices (`0-4`,
    /// `5,7,9`, `ham,spam`); a name wins over an index. Kept classes are renumbered from 0 in
    /// their original order. Default: every class.
    #[serde(default)]
    pub classes: Option<String>,
    /// Labelled training samples kept per class (seeded). Default: all.
    #[serde(default)]
    pub per_class: Option<usize>,
    /// Labelled training samples kept in all, stratified by class (seeded). Default: all.
    #[serde(default)]
    pub samples: Option<usize>,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> DataError {
    DataError::Subset {
        field,
        reason: reason.into(),
    }
}

impl LabelSubset {
    /// Whether nothing is cut.
    pub fn keeps_all(&self) -> bool {
        self == &Self::default()
    }

    /// Checks the settings on their own (before any data is read).
    pub fn check(&self) -> Result<(), DataError> {
        if self.per_class == Some(0) {
            return Err(invalid("per_class", "must be at least 1"));
        }
        if self.samples == Some(0) {
            return Err(invalid("samples", "must be at least 1"));
        }
        if self.per_class.is_some() && self.samples.is_some() {
            return Err(invalid(
                "samples",
                "give samples per class or in all, not both",
            ));
        }
        Ok(())
    }

    /// The indices of the kept classes in `names`, ascending; `None` when every class is kept.
    pub fn class_indices(&self, names: &[String]) -> Result<Option<Vec<usize>>, DataError> {
        let Some(spec) = &self.classes else {
            return Ok(None);
        };
        let known = || names.join(", ");
        let mut kept = Vec::new();
        for item in spec.split(',').map(str::trim) {
            if let Some(i) = names.iter().position(|n| n == item) {
                kept.push(i);
                continue;
            }
            let range = match item.split_once('-') {
                Some((a, b)) => a.trim().parse::<usize>().ok().zip(b.trim().parse().ok()),
                None => item.parse::<usize>().ok().map(|i| (i, i)),
            };
            let Some((first, last)) = range.filter(|(a, b)| a <= b && *b < names.len()) else {
                return Err(invalid(
                    "classes",
                    format!(
                        "`{item}` is neither a class name nor a range of class indices 0-{} \
                         (classes: {})",
                        names.len().saturating_sub(1),
                        known()
                    ),
                ));
            };
            kept.extend(first..=last);
        }
        kept.sort_unstable();
        kept.dedup();
        if kept.len() < 2 {
            return Err(invalid(
                "classes",
                format!(
                    "`{spec}` keeps {} class; a classifier needs two",
                    kept.len()
                ),
            ));
        }
        Ok(Some(kept))
    }

    /// `data` with only the kept classes' samples, renumbered (a test set stays whole for them).
    pub fn keep_classes(&self, data: &Data) -> Result<Data, DataError> {
        if self.classes.is_none() {
            return Ok(data.clone());
        }
        let Some(labels) = data.y.labels() else {
            return Err(invalid("classes", "the targets are not classes"));
        };
        let names = class_names(data);
        let kept = self.class_indices(&names)?.expect("classes given");
        let (indices, labels) = renumber(labels, &kept);
        let mut subset = data.subset(&indices);
        subset.y = crate::Targets::Classes {
            labels,
            names: kept.iter().map(|&i| names[i].clone()).collect(),
        };
        Ok(subset)
    }

    /// `texts` with only the kept classes, renumbered.
    pub fn keep_text_classes(&self, texts: &TextSet) -> Result<TextSet, DataError> {
        let Some(kept) = self.class_indices(&texts.classes)? else {
            return Ok(texts.clone());
        };
        let (indices, labels) = renumber(&texts.labels, &kept);
        Ok(TextSet {
            texts: indices.iter().map(|&i| texts.texts[i].clone()).collect(),
            labels,
            classes: kept.iter().map(|&i| texts.classes[i].clone()).collect(),
        })
    }

    /// The labelled training samples kept: `per_class` of each class or `samples` in all
    /// (stratified), drawn with `seed`, in a shuffled order.
    pub fn cut_training(&self, train: &Data, seed: u64) -> Result<Data, DataError> {
        let labels: Vec<usize> = match train.y.labels() {
            Some(labels) => labels.to_vec(),
            None if self.per_class.is_some() => {
                return Err(invalid("per_class", "the targets are not classes"));
            }
            None => vec![0; train.len()], // regression: one group
        };
        let names = class_names(train);
        Ok(match self.training_indices(&labels, &names, seed)? {
            Some(indices) => train.subset(&indices),
            None => train.clone(),
        })
    }

    /// [`cut_training`](Self::cut_training) for texts.
    pub fn cut_texts(&self, train: &TextSet, seed: u64) -> Result<TextSet, DataError> {
        Ok(
            match self.training_indices(&train.labels, &train.classes, seed)? {
                Some(indices) => TextSet {
                    texts: indices.iter().map(|&i| train.texts[i].clone()).collect(),
                    labels: indices.iter().map(|&i| train.labels[i]).collect(),
                    classes: train.classes.clone(),
                },
                None => train.clone(),
            },
        )
    }

    fn training_indices(
        &self,
        labels: &[usize],
        names: &[String],
        seed: u64,
    ) -> Result<Option<Vec<usize>>, DataError> {
        let n_groups = labels.iter().max().map_or(0, |&m| m + 1).max(names.len());
        let mut groups = vec![Vec::new(); n_groups];
        labels
            .iter()
            .enumerate()
            .for_each(|(i, &l)| groups[l].push(i));
        let mut rng = StdRng::seed_from_u64(seed);
        groups.iter_mut().for_each(|g| g.shuffle(&mut rng));
        let counts: Vec<usize> = if let Some(n) = self.per_class {
            for (group, name) in groups.iter().zip(names) {
                if group.len() < n {
                    return Err(invalid(
                        "per_class",
                        format!(
                            "class `{name}` has {} training samples, fewer than the {n} asked for",
                            group.len()
                        ),
                    ));
                }
            }
            vec![n; groups.len()]
        } else if let Some(n) = self.samples {
            if n > labels.len() {
                return Err(invalid(
                    "samples",
                    format!("{n} asked for, the training part has {}", labels.len()),
                ));
            }
            stratified_counts(&groups, n)
        } else {
            return Ok(None);
        };
        let mut kept: Vec<usize> = groups
            .iter()
            .zip(counts)
            .flat_map(|(g, n)| g[..n].iter().copied())
            .collect();
        kept.shuffle(&mut rng);
        Ok(Some(kept))
    }
}

fn class_names(data: &Data) -> Vec<String> {
    match &data.y {
        crate::Targets::Classes { names, .. } => names.clone(),
        _ => Vec::new(),
    }
}

/// The samples whose label is in `kept`, and their labels as positions in `kept`.
fn renumber(labels: &[usize], kept: &[usize]) -> (Vec<usize>, Vec<usize>) {
    labels
        .iter()
        .enumerate()
        .filter_map(|(i, l)| kept.iter().position(|k| k == l).map(|new| (i, new)))
        .unzip()
}

/// `n` samples shared among the groups in proportion to their sizes (largest remainders).
fn stratified_counts(groups: &[Vec<usize>], n: usize) -> Vec<usize> {
    let total: usize = groups.iter().map(Vec::len).sum();
    let exact: Vec<f64> = groups
        .iter()
        .map(|g| g.len() as f64 * n as f64 / total as f64)
        .collect();
    let mut counts: Vec<usize> = exact.iter().map(|e| e.floor() as usize).collect();
    let mut order: Vec<usize> = (0..groups.len()).collect();
    order.sort_by(|&a, &b| {
        (exact[b] - counts[b] as f64)
            .total_cmp(&(exact[a] - counts[a] as f64))
            .then(a.cmp(&b))
    });
    let missing = n - counts.iter().sum::<usize>();
    for &g in order.iter().take(missing) {
        counts[g] += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Targets;

    /// Class `c` has `10 * (c + 1)` samples, each sample's value its index.
    fn data() -> Data {
        let labels: Vec<usize> = (0..4).flat_map(|c| vec![c; 10 * (c + 1)]).collect();
        let x = (0..labels.len()).map(|i| i as f32).collect();
        let names = ["zero", "one", "two", "three"].map(String::from).to_vec();
        Data::new(x, vec![1], Targets::Classes { labels, names }).unwrap()
    }

    fn classes(spec: &str) -> LabelSubset {
        LabelSubset {
            classes: Some(spec.into()),
            ..Default::default()
        }
    }

    #[test]
    fn classes_by_range_index_or_name_are_renumbered_in_order() {
        let names = class_names(&data());
        assert_eq!(
            classes("1-2").class_indices(&names).unwrap(),
            Some(vec![1, 2])
        );
        assert_eq!(
            classes("three, 0").class_indices(&names).unwrap(),
            Some(vec![0, 3])
        );
        let kept = classes("3,1").keep_classes(&data()).unwrap();
        assert_eq!(kept.class_counts(), vec![20, 40]);
        let Targets::Classes { names, labels } = &kept.y else {
            unreachable!()
        };
        assert_eq!(names, &["one", "three"].map(String::from).to_vec());
        // Sample 10 (the first of class 1) is now label 0; the first of class 3 (index 60) is 1.
        assert_eq!((kept.x[0], labels[0]), (10.0, 0));
        assert_eq!((kept.x[20], labels[20]), (60.0, 1));
    }

    #[test]
    fn bad_class_lists_are_named() {
        let names = class_names(&data());
        for (spec, want) in [
            (
                "7",
                "`7` is neither a class name nor a range of class indices 0-3",
            ),
            ("2-9", "`2-9`"),
            ("four", "(classes: zero, one, two, three)"),
            ("1", "keeps 1 class"),
        ] {
            let err = classes(spec).class_indices(&names).unwrap_err().to_string();
            assert!(err.contains(want), "{spec}: {err}");
        }
    }

    #[test]
    fn per_class_takes_that_many_of_each_seeded() {
        let cut = LabelSubset {
            per_class: Some(7),
            ..Default::default()
        };
        let a = cut.cut_training(&data(), 1).unwrap();
        assert_eq!(a.class_counts(), vec![7; 4]);
        assert_eq!(
            a,
            cut.cut_training(&data(), 1).unwrap(),
            "same seed, same cut"
        );
        assert_ne!(a.x, cut.cut_training(&data(), 2).unwrap().x);
        let too_many = LabelSubset {
            per_class: Some(11),
            ..Default::default()
        };
        let err = too_many.cut_training(&data(), 1).unwrap_err().to_string();
        assert!(
            err.contains("class `zero` has 10 training samples, fewer than the 11"),
            "{err}"
        );
    }

    #[test]
    fn samples_in_all_keep_the_class_balance() {
        let cut = LabelSubset {
            samples: Some(20),
            ..Default::default()
        };
        // 10/100, 20/100, 30/100, 40/100 of 20.
        assert_eq!(
            cut.cut_training(&data(), 3).unwrap().class_counts(),
            vec![2, 4, 6, 8]
        );
        let odd = LabelSubset {
            samples: Some(7),
            ..Default::default()
        };
        // Exact shares 0.7, 1.4, 2.1, 2.8: floors 0, 1, 2, 2, then the largest remainders.
        assert_eq!(
            odd.cut_training(&data(), 3).unwrap().class_counts(),
            vec![1, 1, 2, 3]
        );
    }

    #[test]
    fn texts_are_cut_the_same_way() {
        let set = TextSet {
            texts: (0..30).map(|i| format!("text {i}")).collect(),
            labels: (0..30).map(|i| i % 3).collect(),
            classes: ["a", "b", "c"].map(String::from).to_vec(),
        };
        let kept = classes("a,c").keep_text_classes(&set).unwrap();
        assert_eq!(kept.classes, ["a", "c"].map(String::from).to_vec());
        assert_eq!(
            (kept.len(), &kept.texts[1][..], kept.labels[1]),
            (20, "text 2", 1)
        );
        let cut = LabelSubset {
            per_class: Some(4),
            ..Default::default()
        }
        .cut_texts(&kept, 5)
        .unwrap();
        assert_eq!(cut.len(), 8);
        assert!(cut.texts.iter().zip(&cut.labels).all(|(t, &l)| {
            let i: usize = t[5..].parse().unwrap();
            [0, 2][l] == i % 3
        }));
    }

    #[test]
    fn settings_are_checked_up_front() {
        let both = LabelSubset {
            per_class: Some(1),
            samples: Some(2),
            ..Default::default()
        };
        assert!(both.check().unwrap_err().to_string().contains("not both"));
        let zero = LabelSubset {
            per_class: Some(0),
            ..Default::default()
        };
        assert!(zero.check().is_err());
        assert!(LabelSubset::default().check().is_ok() && LabelSubset::default().keeps_all());
    }
}
