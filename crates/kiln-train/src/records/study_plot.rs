//! `tune.png`: a hyperparameter study's trials, each one's curve against epochs (pruned ones
//! faded, the best one marked), and the objective against the hyperparameters that mattered
//! most.

use std::path::Path;

use plotters::prelude::*;

use super::plot::{DrawResult, FONT, draw_error, register, tick, write_png};
use crate::TrainError;

/// One trial's curve: its `(epoch, value)` points, whether the pruner stopped it, and whether
/// it is the study's best.
#[derive(Debug, Clone, PartialEq)]
pub struct TrialCurve {
    /// `(epoch, objective)` after each epoch it ran.
    pub points: Vec<(f64, f64)>,
    /// Stopped by the pruner: drawn faded.
    pub pruned: bool,
    /// The study's best trial: drawn on top, in red.
    pub best: bool,
}

/// The objective against one hyperparameter: each trial's `(value of the hyperparameter,
/// objective)`; a hyperparameter of choices has their names in `labels` and the index of its
/// choice as x.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamPanel {
    /// The hyperparameter's name and its share of the objective's spread, for the title.
    pub title: String,
    /// A logarithmic x axis (a learning rate).
    pub log_x: bool,
    /// `(value of the hyperparameter, objective)` of each complete trial.
    pub points: Vec<(f64, f64)>,
    /// The same of each pruned trial (its best value before it stopped): drawn faded.
    pub pruned: Vec<(f64, f64)>,
    /// The names of the choices, for a hyperparameter of choices.
    pub labels: Option<Vec<String>>,
}

/// What `tune.png` shows.
#[derive(Debug, Clone, PartialEq)]
pub struct StudyPlot {
    /// The objective's name (`val_loss`).
    pub objective: String,
    /// Every trial that reported a value.
    pub curves: Vec<TrialCurve>,
    /// At most the first two are drawn.
    pub params: Vec<ParamPanel>,
}

const COMPLETE: RGBColor = RGBColor(31, 119, 180);
const PRUNED: RGBColor = RGBColor(190, 190, 190);
const BEST: RGBColor = RGBColor(214, 39, 40);
const PANEL: (u32, u32) = (480, 380);

/// Draws `plot` to `path` (PNG, written atomically).
pub fn plot_study(path: &Path, plot: &StudyPlot) -> Result<(), TrainError> {
    register();
    let (plot, log) = on_log_scale(plot);
    let plot = &plot;
    let panels = 1 + plot.params.len().min(2) as u32;
    let (width, height) = (PANEL.0 * panels, PANEL.1);
    let mut pixels = vec![0u8; (width * height * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (width, height)).into_drawing_area();
        let draw = || -> DrawResult {
            root.fill(&WHITE)?;
            let areas = root.split_evenly((1, panels as usize));
            let objective = if log {
                format!("{} (log scale)", plot.objective)
            } else {
                plot.objective.clone()
            };
            draw_curves(&areas[0], plot, &objective, log)?;
            for (area, panel) in areas[1..].iter().zip(&plot.params) {
                draw_param(area, panel, &objective, log)?;
            }
            root.present()?;
            Ok(())
        };
        draw().map_err(draw_error(path))?;
    }
    write_png(path, &pixels, width, height)
}

/// `plot` with its objective values as their base-10 logarithm when they are all positive and
/// span more than a decade (a few diverged trials would flatten every other curve), and
/// whether they are.
fn on_log_scale(plot: &StudyPlot) -> (StudyPlot, bool) {
    let values = plot
        .curves
        .iter()
        .flat_map(|c| c.points.iter())
        .chain(
            plot.params
                .iter()
                .flat_map(|p| p.points.iter().chain(&p.pruned)),
        )
        .map(|p| p.1)
        .filter(|v| v.is_finite());
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    let log = lo > 0.0 && hi / lo > 10.0;
    let mut plot = plot.clone();
    if log {
        let points = plot
            .curves
            .iter_mut()
            .flat_map(|c| c.points.iter_mut())
            .chain(
                plot.params
                    .iter_mut()
                    .flat_map(|p| p.points.iter_mut().chain(p.pruned.iter_mut())),
            );
        for p in points {
            p.1 = p.1.log10();
        }
    }
    (plot, log)
}

/// An objective axis label: the value, or 10 to the value on a log scale.
fn y_tick(v: f64, log: bool) -> String {
    if log { tick(10f64.powf(v)) } else { tick(v) }
}

/// The range of `values` (finite ones), padded by 5%; `(0, 1)` when there are none.
fn padded(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if lo > hi {
        return (0.0, 1.0);
    }
    let pad = if hi > lo { (hi - lo) * 0.05 } else { 0.5 };
    (lo - pad, hi + pad)
}

fn draw_curves(
    area: &DrawingArea<BitMapBackend, plotters::coord::Shift>,
    plot: &StudyPlot,
    objective: &str,
    log: bool,
) -> DrawResult {
    let points = || plot.curves.iter().flat_map(|c| c.points.iter());
    let last_epoch = points().map(|p| p.0).fold(1.0, f64::max);
    let (y0, y1) = padded(points().map(|p| p.1));
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!("{} per epoch, each trial", plot.objective),
            (FONT, 15),
        )
        .margin(10)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(1.0..last_epoch.max(2.0), y0..y1)?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc(objective)
        .label_style((FONT, 11))
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| y_tick(*v, log))
        .draw()?;
    // Pruned first, complete over them, the best on top.
    let mut order: Vec<&TrialCurve> = plot.curves.iter().collect();
    order.sort_by_key(|c| (c.best, !c.pruned));
    for curve in order {
        let style = match (curve.best, curve.pruned) {
            (true, _) => BEST.stroke_width(3),
            (false, true) => PRUNED.stroke_width(1),
            (false, false) => COMPLETE.mix(0.7).stroke_width(1),
        };
        let finite: Vec<(f64, f64)> = curve
            .points
            .iter()
            .copied()
            .filter(|p| p.1.is_finite())
            .collect();
        // Where it ended: a pruned trial's only epoch shows too.
        let end = finite.last().copied();
        chart.draw_series(LineSeries::new(finite, style))?;
        chart.draw_series(end.map(|p| Circle::new(p, 3, style.color.filled())))?;
    }
    Ok(())
}

fn draw_param(
    area: &DrawingArea<BitMapBackend, plotters::coord::Shift>,
    panel: &ParamPanel,
    objective: &str,
    log: bool,
) -> DrawResult {
    let (y0, y1) = padded(panel.points.iter().chain(&panel.pruned).map(|p| p.1));
    let caption = (panel.title.as_str(), (FONT, 15));
    let keep = |points: &[(f64, f64)]| -> Vec<(f64, f64)> {
        points
            .iter()
            .copied()
            .filter(|p| p.0.is_finite() && p.1.is_finite())
            .collect()
    };
    let (finite, pruned) = (keep(&panel.points), keep(&panel.pruned));
    let marks = || {
        let faded = pruned
            .clone()
            .into_iter()
            .map(|p| Circle::new(p, 3, PRUNED.filled()));
        let complete = finite
            .clone()
            .into_iter()
            .map(|p| Circle::new(p, 4, COMPLETE.mix(0.8).filled()));
        faded.chain(complete)
    };
    if let Some(labels) = &panel.labels {
        let n = labels.len().max(1) as f64;
        let mut chart = ChartBuilder::on(area)
            .caption(caption.0, caption.1)
            .margin(10)
            .x_label_area_size(36)
            .y_label_area_size(64)
            .build_cartesian_2d(-0.5..n - 0.5, y0..y1)?;
        let labels = labels.clone();
        chart
            .configure_mesh()
            .y_desc(objective)
            .label_style((FONT, 11))
            .x_labels(labels.len().max(1))
            .x_label_formatter(&|v| {
                let i = v.round();
                if (v - i).abs() < 1e-6 && i >= 0.0 {
                    labels.get(i as usize).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .y_label_formatter(&|v| y_tick(*v, log))
            .draw()?;
        chart.draw_series(marks())?;
    } else if panel.log_x {
        let (x0, x1) = finite
            .iter()
            .chain(&pruned)
            .filter(|p| p.0 > 0.0)
            .fold((f64::INFINITY, 0.0f64), |(lo, hi), p| {
                (lo.min(p.0), hi.max(p.0))
            });
        let (x0, x1) = if x0 < x1 {
            (x0 / 1.2, x1 * 1.2)
        } else {
            (1e-6, 1.0)
        };
        let mut chart = ChartBuilder::on(area)
            .caption(caption.0, caption.1)
            .margin(10)
            .x_label_area_size(36)
            .y_label_area_size(64)
            .build_cartesian_2d((x0..x1).log_scale(), y0..y1)?;
        chart
            .configure_mesh()
            .y_desc(objective)
            .label_style((FONT, 11))
            .x_label_formatter(&|v| format!("{v:.0e}"))
            .y_label_formatter(&|v| y_tick(*v, log))
            .draw()?;
        chart.draw_series(marks())?;
    } else {
        let (x0, x1) = padded(finite.iter().chain(&pruned).map(|p| p.0));
        let mut chart = ChartBuilder::on(area)
            .caption(caption.0, caption.1)
            .margin(10)
            .x_label_area_size(36)
            .y_label_area_size(64)
            .build_cartesian_2d(x0..x1, y0..y1)?;
        chart
            .configure_mesh()
            .y_desc(objective)
            .label_style((FONT, 11))
            .x_label_formatter(&|v| tick(*v))
            .y_label_formatter(&|v| y_tick(*v, log))
            .draw()?;
        chart.draw_series(marks())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_over_decades_go_on_a_log_scale() {
        let curve = |points: Vec<(f64, f64)>| TrialCurve {
            points,
            pruned: false,
            best: false,
        };
        let narrow = StudyPlot {
            objective: "val_loss".into(),
            curves: vec![curve(vec![(1.0, 0.5), (2.0, 0.2)])],
            params: vec![],
        };
        assert!(!on_log_scale(&narrow).1);
        let mut wide = narrow.clone();
        wide.curves.push(curve(vec![(1.0, 10.0)]));
        let (scaled, log) = on_log_scale(&wide);
        assert!(log);
        assert_eq!(scaled.curves[1].points, vec![(1.0, 1.0)]);
        assert!((scaled.curves[0].points[1].1 - 0.2f64.log10()).abs() < 1e-15);
        assert_eq!(y_tick(-1.0, true), "0.100");
    }

    /// The picture is a PNG as wide as its panels, with the best trial's red in it.
    #[test]
    fn a_study_draws_its_curves_and_parameters() {
        let path = std::env::temp_dir().join(format!("kiln-study-plot-{}.png", std::process::id()));
        let plot = StudyPlot {
            objective: "val_loss".into(),
            curves: vec![
                TrialCurve {
                    points: vec![(1.0, 0.9), (2.0, 0.7), (3.0, 0.6)],
                    pruned: false,
                    best: false,
                },
                TrialCurve {
                    points: vec![(1.0, 1.2)],
                    pruned: true,
                    best: false,
                },
                TrialCurve {
                    points: vec![(1.0, 0.5), (2.0, 0.3), (3.0, 0.2)],
                    pruned: false,
                    best: true,
                },
            ],
            params: vec![
                ParamPanel {
                    title: "lr (0.80)".into(),
                    log_x: true,
                    points: vec![(1e-3, 0.6), (1e-2, 0.2)],
                    pruned: vec![(1e-1, 1.2)],
                    labels: None,
                },
                ParamPanel {
                    title: "optimizer (0.10)".into(),
                    log_x: false,
                    points: vec![(0.0, 0.6), (0.0, 0.2)],
                    pruned: vec![(1.0, 1.2)],
                    labels: Some(vec!["adam".into(), "sgd".into()]),
                },
            ],
        };
        plot_study(&path, &plot).unwrap();
        let decoder =
            png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&path).unwrap()));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height), (3 * PANEL.0, PANEL.1));
        let red = buf[..info.buffer_size()]
            .chunks(3)
            .filter(|p| p[0] == BEST.0 && p[1] == BEST.1 && p[2] == BEST.2)
            .count();
        assert!(red > 50, "{red} pixels of the best trial's colour");
        std::fs::remove_file(path).unwrap();
    }
}
