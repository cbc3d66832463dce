use std::fmt;

use serde::Serialize;

/// Per-class results of a classifier: the confusion matrix and precision, recall and F1 of each
/// class, with their macro averages (the unweighted mean over classes, as scikit-learn's
/// `classification_report`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassReport {
    /// Name of each class.
    pub names: Vec<String>,
    /// `confusion[true_class][predicted_class]`: how many samples of a class got each prediction.
    pub confusion: Vec<Vec<usize>>,
    /// Precision of each class: of the samples predicted as it, the fraction that are.
    pub precision: Vec<f64>,
    /// Recall of each class: of its samples, the fraction predicted as it.
    pub recall: Vec<f64>,
    /// F1 score of each class: the harmonic mean of its precision and recall.
    pub f1: Vec<f64>,
    /// Mean of the classes' precisions.
    pub macro_precision: f64,
    /// Mean of the classes' recalls.
    pub macro_recall: f64,
    /// Mean of the classes' F1 scores.
    pub macro_f1: f64,
}

impl ClassReport {
    /// Builds the report from each sample's true and predicted class. A class never predicted
    /// has precision 0, a class never present recall 0 (scikit-learn's `zero_division=0`).
    pub fn new(names: Vec<String>, truth: &[usize], predicted: &[usize]) -> Self {
        let k = names.len();
        let mut confusion = vec![vec![0usize; k]; k];
        for (&t, &p) in truth.iter().zip(predicted) {
            confusion[t][p] += 1;
        }
        let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        let (mut precision, mut recall, mut f1) = (vec![0.0; k], vec![0.0; k], vec![0.0; k]);
        for c in 0..k {
            let tp = confusion[c][c];
            let predicted_c: usize = (0..k).map(|t| confusion[t][c]).sum();
            let actual_c: usize = confusion[c].iter().sum();
            precision[c] = ratio(tp, predicted_c);
            recall[c] = ratio(tp, actual_c);
            let pr = precision[c] + recall[c];
            f1[c] = if pr == 0.0 {
                0.0
            } else {
                2.0 * precision[c] * recall[c] / pr
            };
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / k.max(1) as f64;
        Self {
            macro_precision: mean(&precision),
            macro_recall: mean(&recall),
            macro_f1: mean(&f1),
            names,
            confusion,
            precision,
            recall,
            f1,
        }
    }
}

impl fmt::Display for ClassReport {
    /// A table of precision, recall, F1 and support per class, then the confusion matrix.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self.names.iter().map(String::len).max().unwrap_or(5).max(9);
        writeln!(f, "{:>width$} precision recall     f1 support", "class")?;
        for (c, name) in self.names.iter().enumerate() {
            let support: usize = self.confusion[c].iter().sum();
            writeln!(
                f,
                "{name:>width$} {:>9.4} {:>6.4} {:>6.4} {support:>7}",
                self.precision[c], self.recall[c], self.f1[c]
            )?;
        }
        writeln!(
            f,
            "{:>width$} {:>9.4} {:>6.4} {:>6.4}",
            "macro avg", self.macro_precision, self.macro_recall, self.macro_f1
        )?;
        writeln!(
            f,
            "confusion matrix (rows: true class, columns: predicted):"
        )?;
        for row in &self.confusion {
            let cells: Vec<String> = row.iter().map(|v| format!("{v:>5}")).collect();
            writeln!(f, "{}", cells.join(""))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_a_hand_computed_case() {
        // truth:     0 0 0 1 1 2
        // predicted: 0 0 1 1 2 2
        let names = vec!["a".into(), "b".into(), "c".into()];
        let r = ClassReport::new(names, &[0, 0, 0, 1, 1, 2], &[0, 0, 1, 1, 2, 2]);
        assert_eq!(
            r.confusion,
            vec![vec![2, 1, 0], vec![0, 1, 1], vec![0, 0, 1]]
        );
        // a: tp 2, predicted 2, actual 3 -> p 1, r 2/3, f1 0.8
        // b: tp 1, predicted 2, actual 2 -> p 0.5, r 0.5, f1 0.5
        // c: tp 1, predicted 2, actual 1 -> p 0.5, r 1, f1 2/3
        assert_eq!(r.precision, vec![1.0, 0.5, 0.5]);
        assert_eq!(r.recall, vec![2.0 / 3.0, 0.5, 1.0]);
        let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
        assert!(close(r.f1[0], 0.8) && close(r.f1[1], 0.5) && close(r.f1[2], 2.0 / 3.0));
        assert!(close(r.macro_precision, 2.0 / 3.0));
        assert!(close(r.macro_recall, (2.0 / 3.0 + 0.5 + 1.0) / 3.0));
        assert!(close(r.macro_f1, (0.8 + 0.5 + 2.0 / 3.0) / 3.0));
        assert!(r.to_string().contains("macro avg"));
    }

    #[test]
    fn a_class_never_predicted_scores_zero_not_nan() {
        let r = ClassReport::new(vec!["a".into(), "b".into()], &[0, 1], &[0, 0]);
        assert_eq!(r.precision, vec![0.5, 0.0]);
        assert_eq!(r.f1[1], 0.0);
    }
}
