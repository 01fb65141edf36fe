//! A report as plain blocks (headings, paragraphs, tables, charts, code), rendered to one
//! self-contained HTML file (charts inline as SVG, no network needed) and to Markdown for the
//! book (charts as SVG files beside it).

use std::fmt::Write as _;

/// One block of a document.
#[derive(Debug, Clone, PartialEq)]
pub enum Block {
    /// A heading of level 2 or 3.
    Heading(u8, String),
    /// A paragraph; `` `code` `` and `**bold**` spans are kept.
    Paragraph(String),
    /// A warning the reader must see.
    Warning(String),
    /// What the document concludes, in a sentence or two (it opens the document).
    Verdict(String),
    /// A bulleted list.
    List(Vec<String>),
    /// A table.
    Table {
        /// Column titles.
        head: Vec<String>,
        /// Rows of cells.
        rows: Vec<Vec<String>>,
    },
    /// A chart: a file stem (for Markdown) and the SVG.
    Chart {
        /// File stem, unique within the document set.
        id: String,
        /// Caption.
        caption: String,
        /// The SVG text.
        svg: String,
    },
    /// Preformatted text (plans, statements, arithmetic).
    Code(String),
}

/// A document.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Doc {
    /// Title.
    pub title: String,
    /// Blocks in order.
    pub blocks: Vec<Block>,
}

impl Doc {
    /// An empty document.
    pub fn new(title: impl Into<String>) -> Self {
        Self { title: title.into(), blocks: Vec::new() }
    }

    /// Appends a block.
    pub fn push(&mut self, block: Block) {
        self.blocks.push(block);
    }

    /// Opens the document with its verdict (before every other block, whenever it is known), its
    /// first letter a capital.
    pub fn verdict(&mut self, text: impl Into<String>) {
        let text: String = text.into();
        let mut chars = text.chars();
        let text = chars.next().map_or(String::new(), |first| first.to_uppercase().chain(chars).collect());
        self.blocks.insert(0, Block::Verdict(text));
    }

    /// Adds a level-2 heading.
    pub fn h2(&mut self, text: impl Into<String>) {
        self.push(Block::Heading(2, text.into()));
    }

    /// Adds a level-3 heading.
    pub fn h3(&mut self, text: impl Into<String>) {
        self.push(Block::Heading(3, text.into()));
    }

    /// Adds a paragraph.
    pub fn p(&mut self, text: impl Into<String>) {
        self.push(Block::Paragraph(text.into()));
    }

    /// Adds a table.
    pub fn table(&mut self, head: &[&str], rows: Vec<Vec<String>>) {
        self.push(Block::Table { head: head.iter().map(|h| (*h).to_owned()).collect(), rows });
    }

    /// Adds a chart when there is one.
    pub fn chart(&mut self, id: &str, caption: &str, svg: Option<String>) {
        if let Some(svg) = svg {
            self.push(Block::Chart { id: id.to_owned(), caption: caption.to_owned(), svg });
        }
    }

    /// One HTML file.
    pub fn to_html(&self) -> String {
        let mut out = String::new();
        let _ = write!(
            out,
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <title>{}</title><style>{STYLE}</style></head><body><main>\n<h1>{}</h1>\n",
            escape(&self.title),
            escape(&self.title)
        );
        for block in &self.blocks {
            match block {
                Block::Heading(level, text) => {
                    let _ = writeln!(out, "<h{level}>{}</h{level}>", inline_html(text));
                }
                Block::Paragraph(text) => {
                    let _ = writeln!(out, "<p>{}</p>", inline_html(text));
                }
                Block::Warning(text) => {
                    let _ = writeln!(out, "<p class=\"warning\">{}</p>", inline_html(text));
                }
                Block::Verdict(text) => {
                    let _ = writeln!(out, "<p class=\"verdict\"><strong>Verdict.</strong> {}</p>", inline_html(text));
                }
                Block::List(items) => {
                    out.push_str("<ul>\n");
                    for item in items {
                        let _ = writeln!(out, "<li>{}</li>", inline_html(item));
                    }
                    out.push_str("</ul>\n");
                }
                Block::Table { head, rows } => {
                    out.push_str("<div class=\"table\"><table><thead><tr>");
                    for h in head {
                        let _ = write!(out, "<th>{}</th>", inline_html(h));
                    }
                    out.push_str("</tr></thead><tbody>\n");
                    for row in rows {
                        out.push_str("<tr>");
                        for cell in row {
                            let class = if is_numeric(cell) { " class=\"n\"" } else { "" };
                            let _ = write!(out, "<td{class}>{}</td>", inline_html(cell));
                        }
                        out.push_str("</tr>\n");
                    }
                    out.push_str("</tbody></table></div>\n");
                }
                Block::Chart { caption, svg, .. } => {
                    let svg = svg.trim_start_matches(|c| c != '<');
                    let svg = svg.strip_prefix("<?xml version=\"1.0\" encoding=\"UTF-8\"?>").unwrap_or(svg);
                    let _ = writeln!(
                        out,
                        "<figure>{}<figcaption>{}</figcaption></figure>",
                        svg.trim(),
                        inline_html(caption)
                    );
                }
                Block::Code(text) => {
                    let _ = writeln!(out, "<pre>{}</pre>", escape(text));
                }
            }
        }
        out.push_str("</main></body></html>\n");
        out
    }

    /// Markdown, with each chart as `<chart_dir>/<id>.svg`; returns the text and the charts.
    pub fn to_markdown(&self, chart_dir: &str) -> (String, Vec<(String, String)>) {
        let mut out = format!("# {}\n\n", self.title);
        let mut charts = Vec::new();
        for block in &self.blocks {
            match block {
                Block::Heading(level, text) => {
                    let _ = writeln!(out, "{} {text}\n", "#".repeat(usize::from(*level)));
                }
                Block::Paragraph(text) => {
                    let _ = writeln!(out, "{text}\n");
                }
                Block::Warning(text) => {
                    let _ = writeln!(out, "> **Warning.** {text}\n");
                }
                Block::Verdict(text) => {
                    let _ = writeln!(out, "> **Verdict.** {text}\n");
                }
                Block::List(items) => {
                    for item in items {
                        let _ = writeln!(out, "- {item}");
                    }
                    out.push('\n');
                }
                Block::Table { head, rows } => {
                    let cell = |c: &str| c.replace('|', "\\|").replace('\n', " ");
                    let _ = writeln!(out, "| {} |", head.iter().map(|h| cell(h)).collect::<Vec<_>>().join(" | "));
                    let _ = writeln!(out, "|{}", "---|".repeat(head.len()));
                    for row in rows {
                        let _ = writeln!(out, "| {} |", row.iter().map(|c| cell(c)).collect::<Vec<_>>().join(" | "));
                    }
                    out.push('\n');
                }
                Block::Chart { id, caption, svg } => {
                    let file = format!("{id}.svg");
                    let _ = writeln!(out, "![{caption}]({chart_dir}/{file})\n\n*{caption}*\n");
                    charts.push((file, svg.clone()));
                }
                Block::Code(text) => {
                    let _ = writeln!(out, "```text\n{text}\n```\n");
                }
            }
        }
        (out, charts)
    }
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;color:#1d1d1f;background:#fafafa;margin:0}\
main{max-width:960px;margin:0 auto;padding:24px 28px 64px;background:#fff}\
h1{font-size:1.7rem;border-bottom:2px solid #1f77b4;padding-bottom:6px}h2{margin-top:2rem;font-size:1.3rem}\
h3{font-size:1.08rem;margin-top:1.4rem}p,li{line-height:1.5}\
.table{overflow-x:auto}table{border-collapse:collapse;margin:10px 0;font-size:.9rem}\
th,td{border:1px solid #ddd;padding:4px 9px;text-align:left;vertical-align:top}th{background:#f2f5f9}\
td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}\
pre{background:#f6f8fa;border:1px solid #e1e4e8;padding:10px;overflow-x:auto;font-size:.8rem}\
code{background:#f2f2f2;padding:0 3px;border-radius:3px}\
figure{margin:14px 0}figure svg{max-width:100%;height:auto}figcaption{font-size:.85rem;color:#555}\
.warning{background:#fff3cd;border-left:5px solid #d9534f;padding:8px 12px;font-weight:600}\
.verdict{background:#eef5fb;border-left:5px solid #1f77b4;padding:8px 12px;font-size:1.05rem}";

/// A cell that holds a figure (`12.5`, `0.30%`, `22 s`, `–`), right-aligned.
fn is_numeric(cell: &str) -> bool {
    let core = cell.trim().trim_end_matches(['%', 's', ' ']).trim_start_matches(['+', '-']);
    cell.trim() == "–" || (!core.is_empty() && core.parse::<f64>().is_ok())
}

/// Escapes text for HTML.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Escapes text and turns `` `code` `` and `**bold**` spans into HTML.
fn inline_html(text: &str) -> String {
    let mut out = String::new();
    for (i, part) in escape(text).split('`').enumerate() {
        if i % 2 == 1 {
            let _ = write!(out, "<code>{part}</code>");
        } else {
            for (j, piece) in part.split("**").enumerate() {
                if j % 2 == 1 {
                    let _ = write!(out, "<strong>{piece}</strong>");
                } else {
                    out.push_str(piece);
                }
            }
        }
    }
    out
}
