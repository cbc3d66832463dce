//! Training curves and confusion matrices as PNG pictures, drawn with plotters.
//!
//! The labels use DejaVu Sans Mono compiled into the crate, so nothing depends on the fonts of
//! the machine. Pictures are drawn into memory, encoded as PNG and written atomically.

use std::path::Path;
use std::sync::Once;

use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{FontStyle, register_font};

use crate::{History, TrainError, write_atomic};

pub(crate) const FONT: &str = "sans-serif";
static FONT_BYTES: &[u8] = include_bytes!("../../assets/DejaVuSansMono.ttf");

pub(crate) fn register() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The font is compiled in and known to parse.
        let _ = register_font(FONT, FontStyle::Normal, FONT_BYTES);
    });
}

/// One run to draw: its name, its history and its best epoch (marked on the curves).
pub struct PlotRun<'a> {
    /// The run's name in the legend.
    pub name: &'a str,
    /// Its history.
    pub history: &'a History,
    /// The epoch to mark as the best, if any.
    pub best_epoch: Option<usize>,
}

const TRAIN: RGBColor = RGBColor(31, 119, 180);
const VALID: RGBColor = RGBColor(255, 127, 14);
const BEST: RGBColor = RGBColor(44, 160, 44);
const RATE: RGBColor = RGBColor(148, 103, 189);
const GREY: RGBColor = RGBColor(110, 110, 110);
/// One colour per run when several are compared (matplotlib's tab10, orange and green first
/// skipped so that a single run's colours keep their meaning).
const RUNS: [RGBColor; 12] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
    RGBColor(188, 189, 34),
    RGBColor(127, 127, 127),
    RGBColor(57, 59, 121),
    RGBColor(99, 121, 57),
];
/// A panel's size in pixels, and the legend strip's height above the panels.
const PANEL: (u32, u32) = (520, 340);
const LEGEND: u32 = 64;

/// What a history picture shows: one panel per metric, every run's curves on shared axes.
#[derive(Debug, Clone, PartialEq)]
struct Panel {
    /// "loss", "accuracy" or "learning rate".
    metric: &'static str,
    /// A logarithmic value axis: the values are positive and span two decades or more (a
    /// first epoch's loss of 9,000 would flatten the rest on a linear axis).
    log: bool,
    /// Every run's curves.
    curves: Vec<Curve>,
}

impl Panel {
    fn values(&self) -> impl Iterator<Item = f64> + '_ {
        self.curves.iter().flat_map(|c| c.2.iter().map(|p| p.1))
    }
}

/// The panels of `runs`' pictures: the loss, the accuracy when a run has one, and the learning
/// rate when it changes (over epochs, or between runs); a constant rate is named in the legend
/// instead of taking a panel.
fn panels(runs: &[PlotRun]) -> Vec<Panel> {
    type Field = fn(&crate::EpochRecord) -> Option<f64>;
    let curve = |i: usize, validation: bool, f: Field| -> Curve {
        let points = runs[i]
            .history
            .epochs
            .iter()
            .filter_map(|e| f(e).filter(|v| v.is_finite()).map(|v| (e.epoch as f64, v)))
            .collect();
        (i, validation, points)
    };
    let panel = |metric, train: Option<Field>, valid: Field| {
        let curves: Vec<_> = (0..runs.len())
            .flat_map(|i| {
                train
                    .map(|f| curve(i, false, f))
                    .into_iter()
                    .chain([curve(i, true, valid)])
            })
            .filter(|c| !c.2.is_empty())
            .collect();
        let mut panel = Panel {
            metric,
            log: false,
            curves,
        };
        let (lo, hi) = range(panel.values());
        panel.log = lo > 0.0 && hi / lo >= 100.0;
        panel
    };
    let mut out = vec![panel("loss", Some(|e| Some(e.train_loss)), |e| {
        Some(e.val_loss)
    })];
    let accuracy = panel("accuracy", Some(|e| e.train_accuracy), |e| e.val_accuracy);
    if !accuracy.curves.is_empty() {
        out.push(Panel {
            log: false,
            ..accuracy
        });
    }
    let rates = panel("learning rate", None, |e| Some(e.lr));
    let (lo, hi) = range(rates.values());
    if hi > lo * (1.0 + 1e-9) {
        out.push(rates);
    }
    out
}

/// The smallest and largest of `values` (0 and 1 when there are none).
fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if lo.is_finite() { (lo, hi) } else { (0.0, 1.0) }
}

/// A run's colour: a single run's training curve is blue and its validation curve orange;
/// several runs get a colour each, training dashed and validation solid.
fn colour(runs: usize, run: usize, validation: bool) -> RGBColor {
    match (runs, validation) {
        (1, false) => TRAIN,
        (1, true) => VALID,
        _ => RUNS[run % RUNS.len()],
    }
}

/// Draws the runs' training curves into one picture: a panel per metric (loss, accuracy for
/// classification, the learning rate when it changes), each with every run's training and
/// validation curves on shared axes, the best epochs marked, and one legend above the panels.
pub fn plot_histories(path: &Path, runs: &[PlotRun]) -> Result<(), TrainError> {
    register();
    let panels = panels(runs);
    let epochs = runs
        .iter()
        .map(|r| r.history.epochs.len())
        .max()
        .unwrap_or(0);
    let (width, height) = (PANEL.0 * panels.len() as u32, PANEL.1 + LEGEND);
    let mut pixels = vec![0u8; (width * height * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (width, height)).into_drawing_area();
        let draw = || -> DrawResult {
            root.fill(&WHITE)?;
            let (legend, body) = root.split_vertically(LEGEND);
            draw_legend(&legend, runs)?;
            for (panel, area) in panels.iter().zip(body.split_evenly((1, panels.len()))) {
                let (lo, hi) = range(panel.values());
                if panel.log {
                    let y = (lo / 1.5..hi * 1.5).log_scale();
                    draw_panel(&area, panel, runs, epochs, y, (lo / 1.5, hi * 1.5))?;
                } else {
                    let pad = ((hi - lo) * 0.08).max(hi.abs() * 1e-3).max(1e-12);
                    let lo = if panel.metric == "learning rate" {
                        0.0f64.min(lo)
                    } else {
                        lo
                    };
                    let y = (lo - pad)..(hi + pad);
                    draw_panel(&area, panel, runs, epochs, y, (lo - pad, hi + pad))?;
                }
            }
            root.present()?;
            Ok(())
        };
        draw().map_err(draw_error(path))?;
    }
    write_png(path, &pixels, width, height)
}

/// The legend strip: what each line is, the best epochs, and a constant learning rate.
fn draw_legend(
    area: &DrawingArea<BitMapBackend, plotters::coord::Shift>,
    runs: &[PlotRun],
) -> DrawResult {
    let font = |size: i32| (FONT, size).into_font().color(&BLACK);
    let left = Pos::new(HPos::Left, VPos::Center);
    let mut x = 12;
    let key = |x: &mut i32, y: i32, text: String, colour: RGBColor, dashed: bool| -> DrawResult {
        let style = colour.stroke_width(2);
        if dashed {
            area.draw(&PathElement::new([(*x, y), (*x + 8, y)], style))?;
            area.draw(&PathElement::new([(*x + 14, y), (*x + 22, y)], style))?;
        } else {
            area.draw(&PathElement::new([(*x, y), (*x + 22, y)], style))?;
        }
        area.draw(&Text::new(text.clone(), (*x + 28, y), font(13).pos(left)))?;
        *x += 28 + 8 * text.chars().count() as i32 + 24;
        Ok(())
    };
    let constant_rate = |run: &PlotRun| -> Option<f64> {
        let (lo, hi) = range(run.history.epochs.iter().map(|e| e.lr));
        (hi <= lo * (1.0 + 1e-9) && !run.history.epochs.is_empty()).then_some(lo)
    };
    if let [run] = runs {
        let mut title = run.name.to_string();
        if let Some(lr) = constant_rate(run) {
            title.push_str(&format!(" (learning rate {} throughout)", tick(lr)));
        }
        area.draw(&Text::new(title, (12, 16), font(15).pos(left)))?;
        key(&mut x, 44, "train".into(), TRAIN, false)?;
        key(&mut x, 44, "validation".into(), VALID, false)?;
        if let Some(best) = run.best_epoch {
            key(&mut x, 44, format!("best epoch {best}"), BEST, true)?;
        }
        return Ok(());
    }
    for (i, run) in runs.iter().enumerate() {
        let mut name = run.name.to_string();
        if let Some(best) = run.best_epoch {
            name.push_str(&format!(" (best {best})"));
        }
        if let Some(lr) = constant_rate(run) {
            name.push_str(&format!(" lr {}", tick(lr)));
        }
        key(&mut x, 16, name, colour(runs.len(), i, true), false)?;
    }
    let mut x = 12;
    key(&mut x, 44, "validation".into(), GREY, false)?;
    key(&mut x, 44, "train".into(), GREY, true)?;
    Ok(())
}

/// One panel: every run's curves of one metric against epochs, on the value axis `y` (linear
/// or logarithmic) spanning `(bottom, top)`, epochs 1 to `epochs` with integer ticks only.
fn draw_panel<Y>(
    area: &DrawingArea<BitMapBackend, plotters::coord::Shift>,
    panel: &Panel,
    runs: &[PlotRun],
    epochs: usize,
    y: Y,
    (bottom, top): (f64, f64),
) -> DrawResult
where
    Y: AsRangedCoord<Value = f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    // Half an epoch of margin: the first and last points are off the axes.
    let x = 0.5..epochs.max(1) as f64 + 0.5;
    let mut chart = ChartBuilder::on(area)
        .caption(
            if panel.log {
                format!("{} (log scale)", panel.metric)
            } else {
                panel.metric.to_string()
            },
            (FONT, 16),
        )
        .margin(10)
        .x_label_area_size(34)
        .y_label_area_size(66)
        .build_cartesian_2d(x, y)?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .label_style((FONT, 12))
        .x_labels(epochs.clamp(2, 10) + 1)
        .y_labels(6)
        .x_label_formatter(&|v| integer_tick(*v))
        .y_label_formatter(&|v| tick(*v))
        .light_line_style(TRANSPARENT)
        .bold_line_style(BLACK.mix(0.12))
        .draw()?;
    let several = runs.len() > 1;
    for (i, run) in runs.iter().enumerate() {
        if let Some(best) = run.best_epoch {
            let colour = if several {
                colour(runs.len(), i, true)
            } else {
                BEST
            };
            chart.draw_series(DashedLineSeries::new(
                [(best as f64, bottom), (best as f64, top)],
                6,
                4,
                colour.mix(0.8).stroke_width(1),
            ))?;
        }
    }
    for (run, validation, points) in &panel.curves {
        let colour = if panel.metric == "learning rate" && !several {
            RATE
        } else {
            colour(runs.len(), *run, *validation)
        };
        let style = colour.stroke_width(2);
        if *validation || !several {
            chart.draw_series(LineSeries::new(points.clone(), style))?;
        } else {
            chart.draw_series(DashedLineSeries::new(points.clone(), 7, 5, style))?;
        }
        chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, colour.filled())))?;
    }
    Ok(())
}

pub(crate) type DrawResult = Result<(), Box<dyn std::error::Error>>;

/// One run's curve in a panel: the run's index, whether it is validation (else training), and
/// its (epoch, value) points.
type Curve = (usize, bool, Vec<(f64, f64)>);

/// An axis label: plain decimals in the usual range, scientific notation outside it.
pub(crate) fn tick(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 || (1e-2..1e4).contains(&a) {
        format!("{v:.3}")
    } else {
        format!("{v:.2e}")
    }
}

/// Draws `diagnostics.png`: each weight tensor's gradient norm against epochs on a log scale
/// (a vanishing gradient shows as the first layers' lines far below the last's), and each
/// activation layer's share of dead (ReLU) or saturated (sigmoid, tanh) units on the probe
/// batch, a colour per layer.
pub fn plot_gradients(path: &Path, gradients: &[crate::EpochGradients]) -> Result<(), TrainError> {
    register();
    let mut names: Vec<&str> = Vec::new();
    for p in gradients.iter().flat_map(|e| &e.params) {
        if p.name.contains("weight") && p.size > 1 && !names.contains(&p.name.as_str()) {
            names.push(&p.name);
        }
    }
    let mut layers: Vec<&str> = Vec::new();
    for u in gradients.iter().flat_map(|e| &e.units) {
        if !layers.contains(&u.layer.as_str()) {
            layers.push(&u.layer);
        }
    }
    let series = |name: &str, f: fn(&crate::ParamStats) -> f64| -> Vec<(f64, f64)> {
        gradients
            .iter()
            .filter_map(|e| {
                let p = e.params.iter().find(|p| p.name == name)?;
                Some((e.epoch as f64, f(p))).filter(|(_, v)| v.is_finite())
            })
            .collect()
    };
    let epochs = gradients.iter().map(|e| e.epoch).max().unwrap_or(1);
    let first = gradients.iter().map(|e| e.epoch).min().unwrap_or(1);
    // The legend: a layer's name (its weight's path without `.weight`), in rows that fit.
    let width = 2 * PANEL.0;
    let labels: Vec<String> = names
        .iter()
        .map(|n| n.trim_end_matches(".weight").to_string())
        .collect();
    let mut places = Vec::new();
    let (mut x, mut y) = (12i32, 16i32);
    for label in &labels {
        let w = 28 + 7 * label.chars().count() as i32 + 20;
        if x + w > width as i32 && x > 12 {
            (x, y) = (12, y + 20);
        }
        places.push((x, y));
        x += w;
    }
    let legend_height = (y + 16) as u32;
    let height = PANEL.1 + legend_height;
    let mut pixels = vec![0u8; (width * height * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (width, height)).into_drawing_area();
        let draw = || -> DrawResult {
            root.fill(&WHITE)?;
            let (legend, body) = root.split_vertically(legend_height);
            let left = Pos::new(HPos::Left, VPos::Center);
            for (i, (label, &(x, y))) in labels.iter().zip(&places).enumerate() {
                let colour = RUNS[i % RUNS.len()];
                legend.draw(&PathElement::new(
                    [(x, y), (x + 22, y)],
                    colour.stroke_width(2),
                ))?;
                legend.draw(&Text::new(
                    label.clone(),
                    (x + 28, y),
                    (FONT, 12).into_font().color(&BLACK).pos(left),
                ))?;
            }
            let panels = body.split_evenly((1, 2));
            let x_range = first as f64 - 0.5..epochs as f64 + 0.5;
            let norms: Vec<f64> = names
                .iter()
                .flat_map(|n| series(n, |p| p.grad_norm))
                .map(|p| p.1)
                .filter(|v| *v > 0.0)
                .collect();
            let (lo, hi) = range(norms.into_iter());
            let (lo, hi) = if lo > 0.0 {
                (lo / 2.0, hi * 2.0)
            } else {
                (1e-8, 1.0)
            };
            let mut chart = ChartBuilder::on(&panels[0])
                .caption("gradient norm (log scale)", (FONT, 16))
                .margin(10)
                .x_label_area_size(34)
                .y_label_area_size(66)
                .build_cartesian_2d(x_range.clone(), (lo..hi).log_scale())?;
            chart
                .configure_mesh()
                .x_desc("epoch")
                .label_style((FONT, 12))
                .x_label_formatter(&|v| integer_tick(*v))
                .y_label_formatter(&|v| tick(*v))
                .light_line_style(TRANSPARENT)
                .bold_line_style(BLACK.mix(0.12))
                .draw()?;
            for (i, name) in names.iter().enumerate() {
                let colour = RUNS[i % RUNS.len()];
                let points: Vec<(f64, f64)> = series(name, |p| p.grad_norm)
                    .into_iter()
                    .filter(|p| p.1 > 0.0)
                    .collect();
                chart.draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))?;
                chart.draw_series(
                    points
                        .into_iter()
                        .map(|p| Circle::new(p, 3, colour.filled())),
                )?;
            }
            let mut chart = ChartBuilder::on(&panels[1])
                .caption(
                    "share of units dead (ReLU) or saturated (sigmoid, tanh)",
                    (FONT, 16),
                )
                .margin(10)
                .x_label_area_size(34)
                .y_label_area_size(66)
                .build_cartesian_2d(x_range, -0.02..1.02)?;
            chart
                .configure_mesh()
                .x_desc("epoch")
                .label_style((FONT, 12))
                .x_label_formatter(&|v| integer_tick(*v))
                .y_label_formatter(&|v| format!("{v:.1}"))
                .light_line_style(TRANSPARENT)
                .bold_line_style(BLACK.mix(0.12))
                .draw()?;
            for (j, layer) in layers.iter().enumerate() {
                // A layer's colour is its first weight's, so the panels read together.
                let prefix = format!("{layer}.");
                let i = names
                    .iter()
                    .position(|n| n.starts_with(&prefix))
                    .unwrap_or(names.len() + j);
                let colour = RUNS[i % RUNS.len()];
                let points: Vec<(f64, f64)> = gradients
                    .iter()
                    .filter_map(|e| {
                        let u = e.units.iter().find(|u| &u.layer == layer)?;
                        Some((e.epoch as f64, u.dead_share.or(u.saturated_share)?))
                    })
                    .collect();
                chart.draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))?;
                chart.draw_series(
                    points
                        .into_iter()
                        .map(|p| Circle::new(p, 3, colour.filled())),
                )?;
            }
            root.present()?;
            Ok(())
        };
        draw().map_err(draw_error(path))?;
    }
    write_png(path, &pixels, width, height)
}

/// An epoch axis label: whole epochs only.
fn integer_tick(v: f64) -> String {
    let whole = v.round();
    if (v - whole).abs() < 1e-6 && whole >= 1.0 {
        format!("{whole:.0}")
    } else {
        String::new()
    }
}

/// A picture of curves against a quantity on a log scale (the learning-rate finder's).
pub struct PlotCurve<'a> {
    /// Title above the plot.
    pub title: &'a str,
    /// Label of the x axis.
    pub x_label: &'a str,
    /// Label of the y axis.
    pub y_label: &'a str,
    /// Named curves of (x, y) points, x > 0.
    pub curves: Vec<(&'a str, Vec<(f64, f64)>)>,
    /// A vertical line at this x, with its legend.
    pub mark: Option<(String, f64)>,
}

/// Draws `curve` with a logarithmic x axis.
pub fn plot_curve(path: &Path, curve: &PlotCurve) -> Result<(), TrainError> {
    register();
    let (width, height) = (720u32, 440u32);
    let mut pixels = vec![0u8; (width * height * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (width, height)).into_drawing_area();
        let draw = || -> DrawResult {
            root.fill(&WHITE)?;
            let points = curve.curves.iter().flat_map(|c| c.1.iter());
            let finite: Vec<&(f64, f64)> = points
                .filter(|p| p.0 > 0.0 && p.0.is_finite() && p.1.is_finite())
                .collect();
            let (x0, x1) = finite.iter().fold((f64::INFINITY, 0.0f64), |(lo, hi), p| {
                (lo.min(p.0), hi.max(p.0))
            });
            let (y0, y1) = finite
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
                    (lo.min(p.1), hi.max(p.1))
                });
            let (x0, x1) = if x0 < x1 { (x0, x1) } else { (1e-7, 1.0) };
            let (y0, y1) = if y0 < y1 { (y0, y1) } else { (0.0, 1.0) };
            let pad = (y1 - y0) * 0.05;
            let mut chart = ChartBuilder::on(&root)
                .caption(curve.title, (FONT, 18))
                .margin(10)
                .x_label_area_size(40)
                .y_label_area_size(70)
                .build_cartesian_2d((x0..x1).log_scale(), (y0 - pad)..(y1 + pad))?;
            chart
                .configure_mesh()
                .x_desc(curve.x_label)
                .y_desc(curve.y_label)
                .label_style((FONT, 12))
                .x_label_formatter(&|v| format!("{v:.0e}"))
                .y_label_formatter(&|v| tick(*v))
                .draw()?;
            for ((name, points), color) in curve.curves.iter().zip([TRAIN, VALID, RATE]) {
                let style = color.stroke_width(if name.contains("smooth") { 2 } else { 1 });
                chart
                    .draw_series(LineSeries::new(points.clone(), style))?
                    .label(*name)
                    .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], style));
            }
            if let Some((label, x)) = &curve.mark {
                let style = BEST.stroke_width(2);
                chart
                    .draw_series(LineSeries::new([(*x, y0 - pad), (*x, y1 + pad)], style))?
                    .label(label.clone())
                    .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], style));
            }
            chart
                .configure_series_labels()
                .label_font((FONT, 12))
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .position(SeriesLabelPosition::UpperLeft)
                .draw()?;
            root.present()?;
            Ok(())
        };
        draw().map_err(draw_error(path))?;
    }
    write_png(path, &pixels, width, height)
}

/// Draws a confusion matrix (rows: true class, columns: predicted), each cell labelled with its
/// count. Correct predictions (the diagonal) are shaded blue by the fraction of their row;
/// mistakes red by their count against the largest mistake, so that a few mistakes among
/// thousands of correct predictions still show.
pub fn plot_confusion(
    path: &Path,
    names: &[String],
    confusion: &[Vec<usize>],
) -> Result<(), TrainError> {
    register();
    let n = names.len().clamp(1, 100) as i32;
    let cell = (560 / n).clamp(12, 56);
    let label_width = names.iter().map(|s| s.len()).max().unwrap_or(1).min(16) as i32 * 8 + 16;
    // Wide enough for the title (56 characters of 15-point monospace) however few the classes.
    let width = (label_width + 24 + cell * n + 24).max(560);
    let (left, top) = ((width - cell * n + label_width) / 2, 48);
    let height = top + cell * n + label_width + 40;
    let largest_mistake = confusion
        .iter()
        .enumerate()
        .flat_map(|(t, row)| row.iter().enumerate().filter(move |&(p, _)| p != t))
        .map(|(_, &c)| c)
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let (width, height) = (width as u32, height as u32);
    let mut pixels = vec![0u8; (width * height * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (width, height)).into_drawing_area();
        let draw = || -> DrawResult {
            root.fill(&WHITE)?;
            let centre = Pos::new(HPos::Center, VPos::Center);
            let font = |size: i32| (FONT, size).into_font();
            root.draw(&Text::new(
                "confusion matrix (rows: true class, columns: predicted)",
                (width as i32 / 2, 20),
                font(15).color(&BLACK).pos(centre),
            ))?;
            let size = (cell / 3).clamp(8, 14);
            for (t, row) in confusion.iter().take(n as usize).enumerate() {
                let total = row.iter().sum::<usize>().max(1) as f64;
                let y = top + t as i32 * cell;
                for (p, &count) in row.iter().take(n as usize).enumerate() {
                    let (fill, share) = cell_colour(count, total, largest_mistake, p == t);
                    let x = left + p as i32 * cell;
                    root.draw(&Rectangle::new(
                        [(x, y), (x + cell, y + cell)],
                        fill.filled(),
                    ))?;
                    root.draw(&Rectangle::new(
                        [(x, y), (x + cell, y + cell)],
                        BLACK.mix(0.2),
                    ))?;
                    let ink = if share > 0.5 { WHITE } else { BLACK };
                    root.draw(&Text::new(
                        count.to_string(),
                        (x + cell / 2, y + cell / 2),
                        font(size).color(&ink).pos(centre),
                    ))?;
                }
                let name = names.get(t).map_or("", String::as_str);
                root.draw(&Text::new(
                    name.chars().take(16).collect::<String>(),
                    (left - 8, y + cell / 2),
                    font(12)
                        .color(&BLACK)
                        .pos(Pos::new(HPos::Right, VPos::Center)),
                ))?;
            }
            for (p, name) in names.iter().take(n as usize).enumerate() {
                let x = left + p as i32 * cell + cell / 2;
                root.draw(&Text::new(
                    name.chars().take(16).collect::<String>(),
                    (x, top + n * cell + 8),
                    font(12)
                        .transform(plotters::style::FontTransform::Rotate90)
                        .color(&BLACK)
                        .pos(Pos::new(HPos::Left, VPos::Center)),
                ))?;
            }
            root.present()?;
            Ok(())
        };
        draw().map_err(draw_error(path))?;
    }
    write_png(path, &pixels, width, height)
}

/// A confusion cell's colour and how dark it is (0 to 1): the diagonal blue by its share of the
/// row, a mistake red by the square root of its count against the largest mistake's (at least
/// a quarter dark, so that a single mistake shows), an empty cell white.
fn cell_colour(
    count: usize,
    row_total: f64,
    largest_mistake: f64,
    correct: bool,
) -> (RGBColor, f64) {
    let mix = |share: f64, (r, g, b): (f64, f64, f64)| {
        let c = |full: f64| (255.0 - (255.0 - full) * share).round() as u8;
        RGBColor(c(r), c(g), c(b))
    };
    if count == 0 {
        return (WHITE, 0.0);
    }
    if correct {
        let share = 0.85 * count as f64 / row_total;
        (mix(share, (8.0, 48.0, 107.0)), share)
    } else {
        let share = 0.25 + 0.6 * (count as f64 / largest_mistake).sqrt();
        (mix(share, (165.0, 15.0, 21.0)), share)
    }
}

pub(crate) fn draw_error<E: std::fmt::Display>(path: &Path) -> impl Fn(E) -> TrainError + '_ {
    move |e| TrainError::Record {
        path: path.to_path_buf(),
        reason: format!("drawing the picture: {e}"),
    }
}

/// Encodes RGB pixels as PNG and writes them atomically.
pub(crate) fn write_png(
    path: &Path,
    pixels: &[u8],
    width: u32,
    height: u32,
) -> Result<(), TrainError> {
    let mut bytes = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut bytes, width, height);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().map_err(draw_error(path))?;
        writer.write_image_data(pixels).map_err(draw_error(path))?;
    }
    write_atomic(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EpochRecord;

    fn history(losses: &[f64], accuracy: bool, lrs: &[f64]) -> History {
        History {
            epochs: losses
                .iter()
                .zip(lrs)
                .enumerate()
                .map(|(i, (&loss, &lr))| EpochRecord {
                    epoch: i + 1,
                    train_loss: loss,
                    train_accuracy: accuracy.then_some(0.5),
                    val_loss: loss * 1.1,
                    val_accuracy: accuracy.then_some(0.6),
                    lr,
                    seconds: 1.0,
                    train_seconds: None,
                    metrics: Default::default(),
                })
                .collect(),
        }
    }

    fn run<'a>(name: &'a str, history: &'a History) -> PlotRun<'a> {
        PlotRun {
            name,
            history,
            best_epoch: Some(2),
        }
    }

    #[test]
    fn a_loss_spanning_decades_gets_a_log_axis_and_a_constant_rate_no_panel() {
        // House prices: a first epoch of 9,000, then tens.
        let prices = history(&[9_000.0, 60.0, 30.0, 25.0], false, &[0.01; 4]);
        let p = panels(&[run("prices", &prices)]);
        assert_eq!(p.len(), 1, "the constant rate takes no panel: {p:?}");
        assert_eq!((p[0].metric, p[0].log), ("loss", true));
        let digits = history(&[2.3, 0.5, 0.3], true, &[1e-3, 1e-3, 1e-4]);
        let p = panels(&[run("digits", &digits)]);
        let metrics: Vec<(&str, bool)> = p.iter().map(|p| (p.metric, p.log)).collect();
        assert_eq!(
            metrics,
            [
                ("loss", false),
                ("accuracy", false),
                ("learning rate", false)
            ]
        );
    }

    #[test]
    fn several_runs_share_each_panel() {
        let (a, b) = (
            history(&[1.0, 0.5], true, &[1e-3; 2]),
            history(&[0.9, 0.4, 0.3], true, &[1e-2; 3]),
        );
        let p = panels(&[run("a", &a), run("b", &b)]);
        // Rates constant in each run but different between them: the panel compares them.
        assert_eq!(p.len(), 3);
        let loss: Vec<(usize, bool, usize)> =
            p[0].curves.iter().map(|c| (c.0, c.1, c.2.len())).collect();
        assert_eq!(
            loss,
            [(0, false, 2), (0, true, 2), (1, false, 3), (1, true, 3)]
        );
        let path = std::env::temp_dir().join(format!("kiln-plot-{}.png", std::process::id()));
        plot_histories(&path, &[run("a", &a), run("b", &b)]).unwrap();
        let decoder =
            png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&path).unwrap()));
        let info = decoder.read_info().unwrap();
        assert_eq!(
            (info.info().width, info.info().height),
            (3 * PANEL.0, PANEL.1 + LEGEND)
        );
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn a_single_mistake_among_thousands_is_shaded() {
        // MNIST's largest mistake is about 20 of a class of 1,000: a mistake of 1 still shows.
        let (_, one) = cell_colour(1, 1_000.0, 20.0, false);
        let (_, most) = cell_colour(20, 1_000.0, 20.0, false);
        let (_, correct) = cell_colour(975, 1_000.0, 20.0, true);
        assert!((0.25..0.5).contains(&one), "{one}");
        assert!((most - 0.85).abs() < 1e-9);
        assert!(correct > 0.8);
        assert_eq!(cell_colour(0, 1_000.0, 20.0, false), (WHITE, 0.0));
    }
}
