//! `plan`'s report as a table (people), Markdown (a pull-request comment),
//! JSON or YAML (machines).

use std::fmt::Write as _;

use crate::plan::{Report, Verdict};

/// Output formats of every subcommand.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Markdown,
    Json,
    Yaml,
}

fn verdict_line(r: &Report) -> &'static str {
    match r.verdict {
        Verdict::Safe => "safe: no Service loses or changes its address, nothing is refused",
        Verdict::Breaks => {
            "would break: Services lose or change their address, or their claims are refused"
        }
        Verdict::Unevaluable => "cannot apply: barelb's admission webhook refuses part of it",
    }
}

/// `r` in `format` (`colour`: ANSI on a terminal, table only).
pub fn render(r: &Report, format: Format, colour: bool) -> anyhow::Result<String> {
    Ok(match format {
        Format::Json => serde_json::to_string_pretty(r)? + "\n",
        Format::Yaml => serde_yaml::to_string(r)?,
        Format::Markdown => markdown(r),
        Format::Table => table(r, colour),
    })
}

fn table(r: &Report, colour: bool) -> String {
    let mut s = String::new();
    let paint = |code: &str, text: &str| {
        if colour {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    };
    let _ = writeln!(s, "plan {} → {}", r.base, r.head);
    if r.objects.is_empty() {
        let _ = writeln!(s, "\nno barelb object changes");
    } else {
        let rows: Vec<[&str; 4]> = r
            .objects
            .iter()
            .map(|o| {
                [
                    o.kind,
                    o.name.as_str(),
                    o.change.as_str(),
                    o.origin.as_str(),
                ]
            })
            .collect();
        columns(&mut s, ["KIND", "NAME", "CHANGE", "FILE"], &rows, |_, v| {
            v.to_string()
        });
    }
    if !r.refused.is_empty() {
        let _ = writeln!(s, "\n{}", paint("31", "refused by the admission webhook:"));
        for line in &r.refused {
            let _ = writeln!(s, "  {line}");
        }
    }
    if !r.services.is_empty() {
        let rows: Vec<[&str; 3]> = r
            .services
            .iter()
            .map(|c| [c.service.as_str(), c.before.as_str(), c.after.as_str()])
            .collect();
        columns(&mut s, ["SERVICE", "NOW", "AFTER"], &rows, |i, v| {
            match (i, r.services.iter().find(|c| c.after == v)) {
                (2, Some(c)) if c.breaks => paint("31", v),
                (2, Some(_)) => paint("32", v),
                _ => v.to_string(),
            }
        });
        for c in r.services.iter().filter(|c| c.breaks && !c.why.is_empty()) {
            let _ = writeln!(s, "  {}: {}", c.service, c.why);
        }
    }
    for (ns, lines) in &r.denied_namespaces {
        let _ = writeln!(
            s,
            "\n{} (they keep the addresses they hold; a new claim is refused):",
            paint("31", &format!("namespace {ns} newly denied"))
        );
        for l in lines {
            let _ = writeln!(s, "  {l}");
        }
    }
    for (ns, names) in &r.allowed_namespaces {
        let _ = writeln!(s, "\nnamespace {ns} newly allowed: {}", names.join(", "));
    }
    let code = match r.verdict {
        Verdict::Safe => "32",
        _ => "31",
    };
    let _ = writeln!(s, "\n{}", paint(code, verdict_line(r)));
    s
}

/// A table with columns as wide as their widest cell; `paint(column,
/// cell)` may colour a cell (padding is computed without the colour).
fn columns<const N: usize>(
    s: &mut String,
    header: [&str; N],
    rows: &[[&str; N]],
    paint: impl Fn(usize, &str) -> String,
) {
    let width = |i: usize| {
        rows.iter()
            .map(|r| r[i].chars().count())
            .chain([header[i].len()])
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..N).map(width).collect();
    let line = |cells: [&str; N], paint: &dyn Fn(usize, &str) -> String| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let pad = widths[i].saturating_sub(cell.chars().count());
            out += &paint(i, cell);
            if i + 1 < N {
                out += &" ".repeat(pad + 2);
            }
        }
        out
    };
    let _ = writeln!(s, "\n{}", line(header, &|_, v| v.to_string()));
    for r in rows {
        let _ = writeln!(s, "{}", line(*r, &paint));
    }
}

fn markdown(r: &Report) -> String {
    let mut s = String::new();
    let icon = match r.verdict {
        Verdict::Safe => "✅",
        Verdict::Breaks => "❌",
        Verdict::Unevaluable => "⛔",
    };
    let _ = writeln!(s, "### barelb plan `{}` → `{}`\n", r.base, r.head);
    let _ = writeln!(s, "{icon} **{}**\n", verdict_line(r));
    if !r.objects.is_empty() {
        let _ = writeln!(s, "| kind | name | change | file |\n|---|---|---|---|");
        for o in &r.objects {
            let _ = writeln!(
                s,
                "| {} | `{}` | {} | `{}` |",
                o.kind, o.name, o.change, o.origin
            );
        }
        s.push('\n');
    }
    if !r.refused.is_empty() {
        let _ = writeln!(s, "**Refused by the admission webhook:**\n");
        for line in &r.refused {
            let _ = writeln!(s, "- {line}");
        }
        s.push('\n');
    }
    if !r.services.is_empty() {
        let _ = writeln!(s, "| Service | now | after | |\n|---|---|---|---|");
        for c in &r.services {
            let mark = if c.breaks { "❌" } else { "✅" };
            let _ = writeln!(
                s,
                "| `{}` | {} | {} | {mark} {} |",
                c.service, c.before, c.after, c.why
            );
        }
        s.push('\n');
    }
    for (ns, lines) in &r.denied_namespaces {
        let _ = writeln!(
            s,
            "Namespace `{ns}` newly denied (addresses kept, new claims refused): {}\n",
            lines.join("; ")
        );
    }
    for (ns, names) in &r.allowed_namespaces {
        let _ = writeln!(s, "Namespace `{ns}` newly allowed: {}\n", names.join(", "));
    }
    s
}
