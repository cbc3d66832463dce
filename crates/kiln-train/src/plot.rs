//! Training curves and confusion matrices as PNG pictures, drawn with plotters.
//!
//! The labels use DejaVu Sans Mono compiled into the crate, so nothing depends on the fonts of
//! the machine. Pictures are drawn into memory, encoded as PNG and written atomically.

use std::path::Path;
use std::sync::Once;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{FontStyle, register_font};

use crate::{History, TrainError, write_atomic};

const FONT: &str = "sans-serif";
static FONT_BYTES: &[u8] = include_bytes!("../assets/DejaVuSansMono.ttf");

fn register() {
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

/// Draws the runs' curves side by side, one column per run: the loss (train and validation,
/// the best epoch marked), the accuracy for classification runs, and the learning rate.
pub fn plot_histories(path: &Path, runs: &[PlotRun]) -> Result<(), TrainError> {
    register();
    let accuracy = runs
        .iter()
        .any(|r| r.history.epochs.iter().any(|e| e.val_accuracy.is_some()));
    let rows = if accuracy { 3 } else { 2 };
    let (width, height) = (560 * runs.len().max(1) as u32, 260 * rows as u32);
    let mut pixels = vec![0u8; (width * height * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_error(path))?;
        let columns = root.split_evenly((1, runs.len().max(1)));
        for (run, column) in runs.iter().zip(&columns) {
            let panels = column.split_evenly((rows, 1));
            let epochs = &run.history.epochs;
            let series = |f: fn(&crate::EpochRecord) -> Option<f64>| -> Vec<(f64, f64)> {
                epochs
                    .iter()
                    .filter_map(|e| f(e).filter(|v| v.is_finite()).map(|v| (e.epoch as f64, v)))
                    .collect()
            };
            let mut panel = 0;
            let mut draw = |title: String, lines: Vec<Curve>| {
                // Rates are drawn from zero: a constant rate is a flat line, not noise.
                let from_zero = title.ends_with("learning rate");
                let result = line_panel(
                    &panels[panel],
                    &title,
                    epochs.len(),
                    lines,
                    run.best_epoch,
                    from_zero,
                );
                panel += 1;
                result
            };
            draw(
                format!("{}: loss", run.name),
                vec![
                    ("train", TRAIN, series(|e| Some(e.train_loss))),
                    ("validation", VALID, series(|e| Some(e.val_loss))),
                ],
            )
            .map_err(draw_error(path))?;
            if accuracy {
                draw(
                    format!("{}: accuracy", run.name),
                    vec![
                        ("train", TRAIN, series(|e| e.train_accuracy)),
                        ("validation", VALID, series(|e| e.val_accuracy)),
                    ],
                )
                .map_err(draw_error(path))?;
            }
            draw(
                format!("{}: learning rate", run.name),
                vec![("lr", RATE, series(|e| Some(e.lr)))],
            )
            .map_err(draw_error(path))?;
        }
        root.present().map_err(draw_error(path))?;
    }
    write_png(path, &pixels, width, height)
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

/// A named, coloured curve of (epoch, value) points.
type Curve<'a> = (&'a str, RGBColor, Vec<(f64, f64)>);

/// An axis label: plain decimals in the usual range, scientific notation outside it.
fn tick(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 || (1e-2..1e4).contains(&a) {
        format!("{v:.3}")
    } else {
        format!("{v:.2e}")
    }
}

/// One panel of curves against epochs, with a dashed line at the best epoch.
fn line_panel(
    area: &DrawingArea<BitMapBackend, plotters::coord::Shift>,
    title: &str,
    epochs: usize,
    lines: Vec<Curve>,
    best: Option<usize>,
    from_zero: bool,
) -> DrawResult {
    // Curves that rise (accuracy) keep their legend out of the way at the bottom.
    let rising = lines
        .first()
        .and_then(|l| Some(l.2.last()?.1 > l.2.first()?.1))
        .unwrap_or(false);
    let values = lines.iter().flat_map(|l| l.2.iter().map(|p| p.1));
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    let (lo, hi) = if lo.is_finite() { (lo, hi) } else { (0.0, 1.0) };
    let lo = if from_zero { 0.0f64.min(lo) } else { lo };
    let pad = ((hi - lo) * 0.05).max(hi.abs() * 1e-3).max(1e-12);
    let x_max = epochs.max(2) as f64;
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FONT, 18))
        .margin(8)
        .x_label_area_size(32)
        .y_label_area_size(64)
        .build_cartesian_2d(1.0..x_max, (lo - pad)..(hi + pad))?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .label_style((FONT, 12))
        .y_label_formatter(&|v| tick(*v))
        .x_label_formatter(&|v| format!("{v:.0}"))
        .draw()?;
    if let Some(best) = best {
        let style = BEST.stroke_width(1);
        chart
            .draw_series(DashedLineSeries::new(
                [(best as f64, lo - pad), (best as f64, hi + pad)],
                6,
                4,
                style,
            ))?
            .label(format!("best epoch {best}"))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], style));
    }
    for (name, color, points) in lines {
        let style = color.stroke_width(2);
        chart
            .draw_series(LineSeries::new(points.clone(), style))?
            .label(name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], style));
        chart.draw_series(
            points
                .into_iter()
                .map(|p| Circle::new(p, 2, color.filled())),
        )?;
    }
    chart
        .configure_series_labels()
        .label_font((FONT, 12))
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(if rising {
            SeriesLabelPosition::LowerRight
        } else {
            SeriesLabelPosition::UpperRight
        })
        .draw()?;
    Ok(())
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

/// Draws a confusion matrix (rows: true class, columns: predicted), each cell shaded by the
/// fraction of its row and labelled with its count.
pub fn plot_confusion(
    path: &Path,
    names: &[String],
    confusion: &[Vec<usize>],
) -> Result<(), TrainError> {
    register();
    let n = names.len().clamp(1, 100) as i32;
    let cell = (560 / n).clamp(12, 56);
    let label_width = names.iter().map(|s| s.len()).max().unwrap_or(1).min(16) as i32 * 8 + 16;
    let (left, top) = (label_width + 24, 48);
    let (width, height) = (
        (left + cell * n + 24) as u32,
        (top + cell * n + label_width + 40) as u32,
    );
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
                    let share = count as f64 / total;
                    let shade = (255.0 * (1.0 - 0.85 * share)) as u8;
                    let x = left + p as i32 * cell;
                    root.draw(&Rectangle::new(
                        [(x, y), (x + cell, y + cell)],
                        RGBColor(shade, shade, 255).filled(),
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

fn draw_error<E: std::fmt::Display>(path: &Path) -> impl Fn(E) -> TrainError + '_ {
    move |e| TrainError::Record {
        path: path.to_path_buf(),
        reason: format!("drawing the picture: {e}"),
    }
}

/// Encodes RGB pixels as PNG and writes them atomically.
fn write_png(path: &Path, pixels: &[u8], width: u32, height: u32) -> Result<(), TrainError> {
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
