use burn::config::Config;
use burn::module::{Module, Param};
use burn::tensor::{Device, Int, Tensor, TensorData};

/// Configuration of a [`Perceptron`].
///
/// # Example
///
/// Rosenblatt's rule learns logical AND, which is linearly separable:
///
/// ```
/// use burn::tensor::{Device, Int, Tensor};
/// use kiln_fnn::PerceptronConfig;
///
/// let device = Device::flex();
/// let mut perceptron = PerceptronConfig::new(2).init(&device);
/// let x = Tensor::<2>::from_floats([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]], &device);
/// let fit = perceptron.fit(x.clone(), Tensor::<1, Int>::from_ints([0, 0, 0, 1], &device), 20);
/// assert!(fit.converged);
/// let predicted: Vec<f32> = perceptron.forward(x).into_data().try_to_vec().unwrap();
/// assert_eq!(predicted, [0.0, 0.0, 0.0, 1.0]);
/// ```
#[derive(Config, Debug)]
pub struct PerceptronConfig {
    /// Number of inputs.
    pub d_input: usize,
    /// Step size of the learning rule. Default: 1.0.
    #[config(default = 1.0)]
    pub learning_rate: f64,
}

/// Rosenblatt's perceptron: a threshold unit `y = step(w · x + b)` with `step(z) = 1` for
/// `z > 0`, else 0.
///
/// It learns with the perceptron rule, not with gradients: for every misclassified sample,
/// `w += lr * (target - y) * x` and `b += lr * (target - y)`. The perceptron convergence theorem
/// says this finds a separating hyperplane in finitely many updates when one exists; when none
/// exists (XOR), it never stops making mistakes.
#[derive(Module, Debug)]
pub struct Perceptron {
    /// Weights, `[d_input]`.
    pub weight: Param<Tensor<1>>,
    /// Bias (the negated threshold), `[1]`.
    pub bias: Param<Tensor<1>>,
    learning_rate: f64,
}

/// What [`Perceptron::fit`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct PerceptronFit {
    /// Epochs run (passes over the data).
    pub epochs: usize,
    /// Whether an epoch ended with every sample classified correctly.
    pub converged: bool,
    /// Misclassified samples in each epoch.
    pub errors_per_epoch: Vec<usize>,
}

impl PerceptronConfig {
    /// A perceptron with zero weights and bias, as the textbook starts it.
    pub fn init(&self, device: &Device) -> Perceptron {
        Perceptron {
            weight: Param::from_tensor(Tensor::zeros([self.d_input], device)),
            bias: Param::from_tensor(Tensor::zeros([1], device)),
            learning_rate: self.learning_rate,
        }
    }
}

impl Perceptron {
    /// The unit's output for each sample: 1.0 where `w · x + b > 0`, else 0.0.
    ///
    /// # Shapes
    /// - x: `[batch, d_input]`
    /// - output: `[batch]`
    pub fn forward(&self, x: Tensor<2>) -> Tensor<1> {
        let [_, d_input] = x.dims();
        let z = x.matmul(self.weight.val().reshape([d_input, 1])) + self.bias.val().unsqueeze();
        z.greater_elem(0.0).float().squeeze_dim(1)
    }

    /// Trains with the perceptron rule, one sample at a time in the given order, until an epoch
    /// makes no mistake or `max_epochs` have run.
    ///
    /// # Shapes
    /// - x: `[n, d_input]`
    /// - targets: `[n]`, each 0 or 1
    pub fn fit(
        &mut self,
        x: Tensor<2>,
        targets: Tensor<1, Int>,
        max_epochs: usize,
    ) -> PerceptronFit {
        let [n, d] = x.dims();
        let device = x.device();
        let xs: Vec<f32> = x.into_data().try_to_vec().expect("float data");
        let ts: Vec<f32> = targets
            .into_data()
            .iter::<i64>()
            .map(|t| t as f32)
            .collect();
        let mut w: Vec<f32> = self
            .weight
            .val()
            .into_data()
            .try_to_vec()
            .expect("float data");
        let mut b: f32 = self
            .bias
            .val()
            .into_data()
            .try_to_vec::<f32>()
            .expect("float data")[0];
        let lr = self.learning_rate as f32;

        let mut errors_per_epoch = Vec::new();
        let mut converged = false;
        for _ in 0..max_epochs {
            let mut errors = 0;
            for (row, &t) in xs.chunks_exact(d).zip(&ts) {
                let z: f32 = row.iter().zip(&w).map(|(a, b)| a * b).sum::<f32>() + b;
                let y = if z > 0.0 { 1.0 } else { 0.0 };
                let delta = t - y;
                if delta != 0.0 {
                    errors += 1;
                    w.iter_mut()
                        .zip(row)
                        .for_each(|(wi, xi)| *wi += lr * delta * xi);
                    b += lr * delta;
                }
            }
            errors_per_epoch.push(errors);
            if errors == 0 {
                converged = true;
                break;
            }
        }
        debug_assert_eq!(ts.len(), n);
        self.weight = Param::from_tensor(Tensor::from_data(TensorData::new(w, [d]), &device));
        self.bias = Param::from_tensor(Tensor::from_data(TensorData::new(vec![b], [1]), &device));
        PerceptronFit {
            epochs: errors_per_epoch.len(),
            converged,
            errors_per_epoch,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn truth_table(targets: [i64; 4]) -> (Tensor<2>, Tensor<1, Int>) {
        let device = Device::flex();
        let x = Tensor::from_floats([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]], &device);
        (x, Tensor::from_ints(targets, &device))
    }

    fn accuracy(p: &Perceptron, x: Tensor<2>, t: [i64; 4]) -> f32 {
        let y: Vec<f32> = p.forward(x).into_data().try_to_vec().unwrap();
        y.iter().zip(t).filter(|(y, t)| **y == *t as f32).count() as f32 / 4.0
    }

    #[test]
    fn learns_and_and_or_exactly() {
        for targets in [[0, 0, 0, 1], [0, 1, 1, 1]] {
            let (x, t) = truth_table(targets);
            let mut p = PerceptronConfig::new(2).init(&x.device());
            let fit = p.fit(x.clone(), t, 100);
            assert!(fit.converged, "{targets:?}: {fit:?}");
            assert_eq!(accuracy(&p, x, targets), 1.0);
        }
    }

    #[test]
    fn never_converges_on_xor() {
        // No line separates XOR, so some sample is misclassified in every epoch, and a linear
        // unit gets at most three of the four right.
        let targets = [0, 1, 1, 0];
        let (x, t) = truth_table(targets);
        let mut p = PerceptronConfig::new(2).init(&x.device());
        let fit = p.fit(x.clone(), t, 1000);
        assert!(!fit.converged);
        assert_eq!(fit.epochs, 1000);
        assert!(fit.errors_per_epoch.iter().all(|&e| e > 0));
        assert!(accuracy(&p, x, targets) <= 0.75);
    }

    #[test]
    fn learns_a_separable_real_set_exactly() {
        // Iris setosa against the rest is linearly separable.
        let iris = kiln_datasets::iris();
        let device = Device::flex();
        let x = Tensor::<2>::from_data(TensorData::new(iris.x.clone(), [150, 4]), &device);
        let labels: Vec<i64> = iris
            .y
            .labels()
            .unwrap()
            .iter()
            .map(|&l| i64::from(l == 0))
            .collect();
        let t = Tensor::<1, Int>::from_data(TensorData::new(labels.clone(), [150]), &device);
        let mut p = PerceptronConfig::new(4).init(&device);
        assert!(p.fit(x.clone(), t, 100).converged);
        let y: Vec<f32> = p.forward(x).into_data().try_to_vec().unwrap();
        assert!(y.iter().zip(&labels).all(|(y, l)| *y == *l as f32));
    }
}
