//! Reports from saved results alone (no re-run, no database): the Performance Baseline Report,
//! the Capacity Planning Guide and the Performance Tuning Guide, each as one self-contained HTML
//! file and as Markdown with SVG charts for the book; and the comparison of two runs.
//!
//! Runs are read back by [`crate::results::read`] and judged by [`crate::verdict`]; this folder
//! only presents them.
//!
//! - [`baseline`], [`capacity`], [`tuning`]: the three documents, one file each.
//! - [`model`]: the capacity model (DAU tiers) the Capacity Planning Guide applies.
//! - [`analysis`]: which resource saturated first, with the evidence.
//! - [`settings`]: runs that differ in a SUT setting, side by side in the Tuning Guide.
//! - [`compare`]: two runs side by side, regressions marked.
//! - [`figures`]: the charts a document shows; [`charts`]: plotters charts as SVG.
//! - [`offered`]: a scenario's offered load, drawn without running it.
//! - [`markup`]: documents as blocks, rendered to HTML and Markdown; [`format`]: shared formats.

pub mod analysis;
pub mod baseline;
pub mod capacity;
pub mod charts;
pub mod compare;
pub mod figures;
pub mod format;
pub mod markup;
pub mod model;
pub mod offered;
pub mod settings;
pub mod tuning;

use std::path::{Path, PathBuf};

use self::markup::Doc;
use self::model::CapacityModel;
use crate::results::layout;
use crate::results::read::RunData;
use crate::verdict::limits::Limits;

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A results file is missing or malformed.
    #[error("{0}: {1}")]
    Input(PathBuf, String),
    /// Writing the report failed.
    #[error("writing {0}: {1}")]
    Output(PathBuf, std::io::Error),
    /// A results folder could not be read.
    #[error(transparent)]
    Read(#[from] crate::results::read::ReadError),
    /// The capacity model file is malformed.
    #[error("{0}")]
    Model(String),
}

/// The file stems of the three documents.
pub const DOCUMENTS: [&str; 3] = ["performance-baseline", "capacity-planning", "performance-tuning"];

/// A document's title, by its file stem.
pub fn title(document: &str) -> &'static str {
    match document {
        "performance-baseline" => "Performance Baseline Report",
        "capacity-planning" => "Capacity Planning Guide",
        "performance-tuning" => "Performance Tuning Guide",
        _ => "report",
    }
}

/// Links to the documents and to `extra` (a file of the folder) of a finished folder served as
/// the dashboard's `/results/{index}/`, for those that exist.
pub fn links(folder: &Path, index: usize, extra: &str) -> Vec<crate::live::Link> {
    let documents = DOCUMENTS.iter().map(|d| (title(d).to_owned(), format!("{}/{d}.html", layout::REPORT)));
    documents
        .chain(std::iter::once((extra.to_owned(), extra.to_owned())))
        .filter(|(_, file)| folder.join(file).exists())
        .map(|(title, file)| crate::live::Link { title, href: format!("/results/{index}/{file}") })
        .collect()
}

/// Which files a report is written as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Formats {
    /// HTML and Markdown.
    All,
    /// Markdown and its charts only (for the book, whose own HTML comes from the Markdown).
    MarkdownOnly,
}

/// Reads runs and writes the three documents into `out`; returns the files written.
pub fn render(
    dirs: &[PathBuf],
    out: &Path,
    limits: &Limits,
    model: &CapacityModel,
    formats: Formats,
) -> Result<Vec<PathBuf>, ReportError> {
    let runs = dirs.iter().map(|d| RunData::load(d)).collect::<Result<Vec<_>, _>>()?;
    if runs.is_empty() {
        return Err(ReportError::Input(out.to_path_buf(), "no results folders given".into()));
    }
    let docs = [baseline::baseline(&runs, limits), capacity::capacity(&runs, limits, model), tuning::tuning(&runs)];
    write_documents(&docs, out, formats)
}

/// Writes each document as `<stem>.html` and `<stem>.md` (charts in `charts/`), atomically.
pub fn write_documents(docs: &[Doc], out: &Path, formats: Formats) -> Result<Vec<PathBuf>, ReportError> {
    let charts_dir = out.join("charts");
    std::fs::create_dir_all(&charts_dir).map_err(|e| ReportError::Output(charts_dir.clone(), e))?;
    let mut written = Vec::new();
    for (stem, doc) in DOCUMENTS.iter().zip(docs) {
        if formats == Formats::All {
            let html = out.join(format!("{stem}.html"));
            write_atomically(&html, doc.to_html().as_bytes())?;
            written.push(html);
        }
        let (markdown, charts) = doc.to_markdown("charts");
        let md = out.join(format!("{stem}.md"));
        write_atomically(&md, markdown.as_bytes())?;
        for (file, svg) in charts {
            write_atomically(&charts_dir.join(file), svg.as_bytes())?;
        }
        written.push(md);
    }
    Ok(written)
}

/// [`crate::atomic::write`], its error naming the file.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    crate::atomic::write(path, bytes).map_err(|e| ReportError::Output(path.to_path_buf(), e))
}

/// Reads a capacity model (YAML), or the default.
pub fn capacity_model(path: Option<&Path>) -> Result<CapacityModel, ReportError> {
    let Some(path) = path else { return Ok(CapacityModel::default()) };
    let text = std::fs::read_to_string(path).map_err(|e| ReportError::Model(format!("{}: {e}", path.display())))?;
    serde_yaml::from_str(&text).map_err(|e| ReportError::Model(format!("{}: {e}", path.display())))
}
