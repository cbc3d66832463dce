//! Data augmentation: seeded random image transforms applied to training batches only.
//!
//! Transforms work on CPU image buffers (`[channels, height, width]`, row-major) inside the
//! training batcher, so they run on the loader thread that builds batches ahead of the step,
//! and never touch validation or test batches. Each batch's random stream is seeded from the
//! pipeline's seed and the batch's sample indices, so a batch is augmented the same way
//! whichever thread builds it.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use rand::{RngExt, SeedableRng, rngs::StdRng};
use serde::{Deserialize, Serialize};

/// One random transform.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Transform {
    /// Mirror left-right with probability 1/2.
    Flip,
    /// Zero-pad by `padding` pixels on each side, then crop back to size at a random offset.
    Crop {
        /// Pixels of zero padding on each side before the crop back to the image's size.
        padding: usize,
    },
    /// Rotate by a uniform angle in `[-degrees, degrees]` about the centre (bilinear, zero fill).
    Rotate {
        /// Largest rotation either way, in degrees.
        degrees: f32,
    },
    /// Shift by up to `fraction` of the height and width (bilinear, zero fill).
    Translate {
        /// Largest shift either way, as a fraction of the side.
        fraction: f32,
    },
    /// Scale about the centre by a uniform factor in `[1 - fraction, 1 + fraction]`.
    Zoom {
        /// Largest scaling either way, as a fraction (0.1: 90% to 110%).
        fraction: f32,
    },
    /// Add a uniform offset in `[-delta, delta]` to every pixel.
    Brightness {
        /// Largest value added to every pixel, either way.
        delta: f32,
    },
    /// Scale each pixel's distance from the image mean by a factor in `[1 - factor, 1 + factor]`.
    Contrast {
        /// Largest contrast factor above or below 1.
        factor: f32,
    },
    /// Add gaussian noise of standard deviation `std`.
    Noise {
        /// Standard deviation of the Gaussian noise added to each pixel.
        std: f32,
    },
    /// Zero a random `size` x `size` square (DeVries & Taylor's cutout).
    Cutout {
        /// Side of the square set to zero.
        size: usize,
    },
}

impl Transform {
    /// The names `--augment` accepts, with the meaning of each one's value.
    pub const NAMES: &'static str = "flip, crop=PIXELS, rotate=DEGREES, translate=FRACTION, \
                                     zoom=FRACTION, brightness=DELTA, contrast=FACTOR, noise=STD, cutout=PIXELS";
}

impl fmt::Display for Transform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Transform::Flip => write!(f, "flip"),
            Transform::Crop { padding } => write!(f, "crop={padding}"),
            Transform::Rotate { degrees } => write!(f, "rotate={degrees}"),
            Transform::Translate { fraction } => write!(f, "translate={fraction}"),
            Transform::Zoom { fraction } => write!(f, "zoom={fraction}"),
            Transform::Brightness { delta } => write!(f, "brightness={delta}"),
            Transform::Contrast { factor } => write!(f, "contrast={factor}"),
            Transform::Noise { std } => write!(f, "noise={std}"),
            Transform::Cutout { size } => write!(f, "cutout={size}"),
        }
    }
}

impl FromStr for Transform {
    type Err = String;

    /// `flip`, `crop=4`, `rotate=10`, ... (see [`Transform::NAMES`]); values have defaults:
    /// crop 4, rotate 10, translate 0.1, zoom 0.1, brightness 0.1, contrast 0.2, noise 0.05,
    /// cutout 8.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, value) = s.split_once('=').map_or((s, None), |(n, v)| (n, Some(v)));
        let num = |default: f32| -> Result<f32, String> {
            value.map_or(Ok(default), |v| {
                v.parse::<f32>()
                    .ok()
                    .filter(|x| x.is_finite() && *x >= 0.0)
                    .ok_or_else(|| format!("`{v}` in `{s}` is not a number >= 0"))
            })
        };
        Ok(match name.trim() {
            "flip" => Transform::Flip,
            "crop" => Transform::Crop {
                padding: num(4.0)? as usize,
            },
            "rotate" => Transform::Rotate {
                degrees: num(10.0)?,
            },
            "translate" => Transform::Translate {
                fraction: num(0.1)?,
            },
            "zoom" => Transform::Zoom {
                fraction: num(0.1)?,
            },
            "brightness" => Transform::Brightness { delta: num(0.1)? },
            "contrast" => Transform::Contrast { factor: num(0.2)? },
            "noise" => Transform::Noise { std: num(0.05)? },
            "cutout" => Transform::Cutout {
                size: num(8.0)? as usize,
            },
            other => {
                return Err(format!(
                    "unknown augmentation `{other}` (valid: {})",
                    Transform::NAMES
                ));
            }
        })
    }
}

/// A seeded pipeline of transforms, applied in order to every training image.
///
/// ```
/// use kiln_train::Augmentation;
/// let aug = Augmentation::new(7).flip().crop(2).rotate(10.0);
/// assert_eq!(aug.to_string(), "flip,crop=2,rotate=10");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Augmentation {
    /// The transforms, applied in this order to each training image.
    pub transforms: Vec<Transform>,
    /// Seed of the random draws (with the batch's own indices, so that a batch is augmented the same way whichever thread builds it).
    pub seed: u64,
    /// Transforms of your own, applied after `transforms` ([`Augmentation::with`]). They are
    /// code, not settings: `config.json` does not hold them, and a run resumed from its
    /// directory by the command line runs without them.
    #[serde(skip)]
    pub custom: CustomTransforms,
}

/// A transform of your own, for [`Augmentation::with`]: any `Fn(&mut [f32], [usize; 3], &mut
/// StdRng) + Send + Sync` closure is one.
pub trait ImageTransform: Send + Sync {
    /// Transforms one image of shape `[c, h, w]` (values row-major) in place. Draw every
    /// random number from `rng`: it is seeded from the run's seed and the batch, so that runs
    /// stay reproducible and resumable.
    fn apply(&self, image: &mut [f32], shape: [usize; 3], rng: &mut StdRng);
}

impl<F: Fn(&mut [f32], [usize; 3], &mut StdRng) + Send + Sync> ImageTransform for F {
    fn apply(&self, image: &mut [f32], shape: [usize; 3], rng: &mut StdRng) {
        self(image, shape, rng)
    }
}

/// The named [`ImageTransform`]s of an [`Augmentation`], compared and shown by name.
#[derive(Clone, Default)]
pub struct CustomTransforms(pub Vec<(String, Arc<dyn ImageTransform>)>);

impl fmt::Debug for CustomTransforms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(name, _)| name))
            .finish()
    }
}

impl PartialEq for CustomTransforms {
    fn eq(&self, other: &Self) -> bool {
        self.0.len() == other.0.len() && self.0.iter().zip(&other.0).all(|(a, b)| a.0 == b.0)
    }
}

impl Augmentation {
    /// An empty pipeline.
    pub fn new(seed: u64) -> Self {
        Self {
            transforms: Vec::new(),
            seed,
            custom: CustomTransforms::default(),
        }
    }

    /// Appends a transform of your own, `name`d for messages, after the built-in ones.
    pub fn with(mut self, name: &str, transform: impl ImageTransform + 'static) -> Self {
        self.custom.0.push((name.to_string(), Arc::new(transform)));
        self
    }

    /// Appends `t` to the transforms.
    pub fn then(mut self, t: Transform) -> Self {
        self.transforms.push(t);
        self
    }
    /// Appends [`Transform::Flip`].
    pub fn flip(self) -> Self {
        self.then(Transform::Flip)
    }
    /// Appends [`Transform::Crop`].
    pub fn crop(self, padding: usize) -> Self {
        self.then(Transform::Crop { padding })
    }
    /// Appends [`Transform::Rotate`].
    pub fn rotate(self, degrees: f32) -> Self {
        self.then(Transform::Rotate { degrees })
    }
    /// Appends [`Transform::Translate`].
    pub fn translate(self, fraction: f32) -> Self {
        self.then(Transform::Translate { fraction })
    }
    /// Appends [`Transform::Zoom`].
    pub fn zoom(self, fraction: f32) -> Self {
        self.then(Transform::Zoom { fraction })
    }
    /// Appends [`Transform::Brightness`].
    pub fn brightness(self, delta: f32) -> Self {
        self.then(Transform::Brightness { delta })
    }
    /// Appends [`Transform::Contrast`].
    pub fn contrast(self, factor: f32) -> Self {
        self.then(Transform::Contrast { factor })
    }
    /// Appends [`Transform::Noise`].
    pub fn noise(self, std: f32) -> Self {
        self.then(Transform::Noise { std })
    }
    /// Appends [`Transform::Cutout`].
    pub fn cutout(self, size: usize) -> Self {
        self.then(Transform::Cutout { size })
    }

    /// Parses a comma-separated list such as `flip,crop=4,rotate=10`.
    pub fn parse(list: &str, seed: u64) -> Result<Self, String> {
        let transforms = list
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(str::parse)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            transforms,
            ..Self::new(seed)
        })
    }

    /// Augments `batch` samples of shape `[c, h, w]` stored one after the other in `values`.
    /// `key` identifies the batch (kiln uses its sample indices); the same seed and key always
    /// give the same result.
    pub fn apply_batch(&self, values: &mut [f32], shape: [usize; 3], key: u64) {
        let mut rng = StdRng::seed_from_u64(self.seed ^ key.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let len = shape.iter().product::<usize>().max(1);
        for image in values.chunks_exact_mut(len) {
            self.apply(image, shape, &mut rng);
        }
    }

    /// Augments one image in place, drawing from `rng`. Pixel values stay within the image's
    /// own range (zero fill aside).
    pub fn apply(&self, image: &mut [f32], shape: [usize; 3], rng: &mut StdRng) {
        let (lo, hi) = image
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &v| {
                (l.min(v), h.max(v))
            });
        let (lo, hi) = (lo.min(0.0), hi.max(0.0));
        let [_, h, w] = shape;
        let uniform = |rng: &mut StdRng, a: f32| {
            if a > 0.0 {
                rng.random_range(-a..=a)
            } else {
                0.0
            }
        };
        for t in &self.transforms {
            match *t {
                Transform::Flip => {
                    if rng.random::<bool>() {
                        flip_horizontal(image, shape);
                    }
                }
                Transform::Crop { padding } => {
                    let p = padding as i64;
                    let dy = rng.random_range(-p..=p) as f32;
                    let dx = rng.random_range(-p..=p) as f32;
                    affine(image, shape, [1.0, 0.0, 0.0, 1.0], [dy, dx]);
                }
                Transform::Rotate { degrees } => {
                    let a = uniform(rng, degrees).to_radians();
                    let (s, c) = a.sin_cos();
                    affine(image, shape, [c, -s, s, c], [0.0, 0.0]);
                }
                Transform::Translate { fraction } => {
                    let dy = uniform(rng, fraction) * h as f32;
                    let dx = uniform(rng, fraction) * w as f32;
                    affine(image, shape, [1.0, 0.0, 0.0, 1.0], [dy, dx]);
                }
                Transform::Zoom { fraction } => {
                    let z = 1.0 + uniform(rng, fraction.min(0.9));
                    affine(image, shape, [1.0 / z, 0.0, 0.0, 1.0 / z], [0.0, 0.0]);
                }
                Transform::Brightness { delta } => {
                    let d = uniform(rng, delta);
                    image.iter_mut().for_each(|v| *v = (*v + d).clamp(lo, hi));
                }
                Transform::Contrast { factor } => {
                    let f = 1.0 + uniform(rng, factor.min(1.0));
                    let mean = image.iter().sum::<f32>() / image.len().max(1) as f32;
                    image
                        .iter_mut()
                        .for_each(|v| *v = (mean + (*v - mean) * f).clamp(lo, hi));
                }
                Transform::Noise { std } => {
                    for v in image.iter_mut() {
                        let (u1, u2): (f32, f32) =
                            (rng.random_range(f32::EPSILON..1.0), rng.random());
                        let n = (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos();
                        *v = (*v + std * n).clamp(lo, hi);
                    }
                }
                Transform::Cutout { size } => {
                    let (cy, cx) = (rng.random_range(0..h.max(1)), rng.random_range(0..w.max(1)));
                    let (y0, x0) = (cy.saturating_sub(size / 2), cx.saturating_sub(size / 2));
                    for plane in image.chunks_exact_mut(h * w) {
                        for y in y0..(y0 + size).min(h) {
                            plane[y * w + x0..(x0 + size).min(w) + y * w].fill(0.0);
                        }
                    }
                }
            }
        }
        for (_, transform) in &self.custom.0 {
            transform.apply(image, shape, rng);
        }
    }
}

impl fmt::Display for Augmentation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = (self.transforms.iter().map(Transform::to_string))
            .chain(self.custom.0.iter().map(|(name, _)| name.clone()))
            .collect();
        f.write_str(&names.join(","))
    }
}

/// Mirrors an image left-right.
pub fn flip_horizontal(image: &mut [f32], [_, _, w]: [usize; 3]) {
    image.chunks_exact_mut(w.max(1)).for_each(<[f32]>::reverse);
}

/// Resamples each channel through the map from output pixel `p` (relative to the centre) to
/// source pixel `m * p + centre - shift`, bilinear, with zeros outside the image. An identity
/// `m` and whole-pixel shift reproduce pixels exactly.
fn affine(image: &mut [f32], [c, h, w]: [usize; 3], m: [f32; 4], shift: [f32; 2]) {
    let (cy, cx) = ((h as f32 - 1.0) / 2.0, (w as f32 - 1.0) / 2.0);
    let src: Vec<f32> = image.to_vec();
    for ch in 0..c {
        let plane = &src[ch * h * w..(ch + 1) * h * w];
        let at = |y: i64, x: i64| {
            if y < 0 || x < 0 || y >= h as i64 || x >= w as i64 {
                0.0
            } else {
                plane[y as usize * w + x as usize]
            }
        };
        for y in 0..h {
            for x in 0..w {
                let (py, px) = (y as f32 - cy, x as f32 - cx);
                let sy = m[0] * py + m[1] * px + cy - shift[0];
                let sx = m[2] * py + m[3] * px + cx - shift[1];
                let (y0, x0) = (sy.floor(), sx.floor());
                let (fy, fx) = (sy - y0, sx - x0);
                let (y0, x0) = (y0 as i64, x0 as i64);
                let v = at(y0, x0) * (1.0 - fy) * (1.0 - fx)
                    + at(y0, x0 + 1) * (1.0 - fy) * fx
                    + at(y0 + 1, x0) * fy * (1.0 - fx)
                    + at(y0 + 1, x0 + 1) * fy * fx;
                image[ch * h * w + y * w + x] = v;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(seed: u64) -> Vec<f32> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..2 * 8 * 6).map(|_| rng.random::<f32>()).collect()
    }
    const SHAPE: [usize; 3] = [2, 8, 6];

    fn everything(seed: u64) -> Augmentation {
        Augmentation::new(seed)
            .flip()
            .crop(2)
            .rotate(15.0)
            .translate(0.1)
            .zoom(0.2)
            .brightness(0.3)
            .contrast(0.5)
            .noise(0.1)
            .cutout(3)
    }

    #[test]
    fn flip_twice_is_identity() {
        let original = image(1);
        let mut x = original.clone();
        flip_horizontal(&mut x, SHAPE);
        assert_ne!(x, original);
        assert_eq!(x[5], original[0], "first pixel moves to the end of its row");
        flip_horizontal(&mut x, SHAPE);
        assert_eq!(x, original);
    }

    #[test]
    fn rotating_by_zero_degrees_is_identity() {
        let original = image(2);
        let mut x = original.clone();
        let mut rng = StdRng::seed_from_u64(0);
        Augmentation::new(0)
            .rotate(0.0)
            .crop(0)
            .translate(0.0)
            .apply(&mut x, SHAPE, &mut rng);
        assert_eq!(x, original);
    }

    #[test]
    fn the_same_seed_and_batch_give_the_same_result() {
        let batch: Vec<f32> = [image(3), image(4)].concat();
        let run = |seed: u64, key: u64| {
            let mut b = batch.clone();
            everything(seed).apply_batch(&mut b, SHAPE, key);
            b
        };
        assert_eq!(run(5, 9), run(5, 9));
        assert_ne!(run(5, 9), run(6, 9));
        assert_ne!(run(5, 9), run(5, 10));
        assert_ne!(run(5, 9), batch, "it changes pixels");
    }

    #[test]
    fn pixel_values_stay_in_range() {
        for seed in 0..20 {
            let mut x = image(seed);
            everything(seed).apply_batch(&mut x, SHAPE, seed);
            assert!(x.iter().all(|v| (0.0..=1.0).contains(v)), "seed {seed}");
        }
    }

    #[test]
    fn lists_parse_and_unknown_names_list_the_valid_ones() {
        let a = Augmentation::parse("flip,crop=4,rotate=10", 1).unwrap();
        assert_eq!(a, Augmentation::new(1).flip().crop(4).rotate(10.0));
        assert_eq!(Augmentation::parse(&a.to_string(), 1).unwrap(), a);
        let e = Augmentation::parse("flip,mixup", 1).unwrap_err();
        assert!(
            e.contains("unknown augmentation `mixup`") && e.contains("cutout=PIXELS"),
            "{e}"
        );
        assert!(Augmentation::parse("rotate=-5", 1).is_err());
    }
}
