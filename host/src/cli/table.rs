//! Plain-text rendering for people: aligned tables, key/value blocks and
//! sizes. Everything the server sent is escaped, so a name cannot move the
//! cursor, change colours or reorder a line.

/// A table with a header row.
#[derive(Debug, Clone)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// An empty table with these column headers.
    pub fn new(headers: &[&str]) -> Self {
        Self {
            headers: headers.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; missing cells are blank, extra cells are dropped.
    pub fn row<I, S>(&mut self, cells: I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut row: Vec<String> = cells
            .into_iter()
            .take(self.headers.len())
            .map(|c| sanitize(c.as_ref()))
            .collect();
        row.resize(self.headers.len(), String::new());
        self.rows.push(row);
    }

    /// Columns separated by two spaces, each as wide as its widest cell;
    /// no trailing spaces.
    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&self.headers).chain(&self.rows) {
            let mut line = String::new();
            for (i, (cell, w)) in row.iter().zip(&widths).enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                line.push_str(cell);
                let pad = w - cell.chars().count();
                line.extend(std::iter::repeat_n(' ', pad));
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `key: value` lines with the values aligned.
pub fn key_values(pairs: &[(&str, String)]) -> String {
    let width = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (k, v) in pairs {
        let line = format!(
            "{:width$}  {}",
            format!("{k}:"),
            sanitize(v),
            width = width + 1
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A byte count for people: exact bytes below 1 KiB, otherwise the largest
/// binary unit, with one decimal when it is not a whole number.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut unit = 0;
    let mut scale: u64 = 1024;
    while unit + 1 < UNITS.len() && bytes / scale >= 1024 {
        scale <<= 10;
        unit += 1;
    }
    if bytes.is_multiple_of(scale) {
        format!("{} {}", bytes / scale, UNITS[unit])
    } else {
        // Lossy for huge values, but only ever shown, never parsed back.
        let value = bytes as f64 / scale as f64;
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Escapes what could act on the terminal or disguise the text (control
/// characters, bidirectional overrides, zero-width and other format
/// characters, separators, private use; see [`crate::display_text`]) in
/// text the server sent: records stored before names were checked, too.
pub fn sanitize(text: &str) -> String {
    crate::display_text::escape(text).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_to_the_widest_cell() {
        let mut t = Table::new(&["NAME", "SIZE", "STATUS"]);
        t.row(["a", "1 GiB", "available"]);
        t.row(["longer-name", "512 B", ""]);
        assert_eq!(
            t.render(),
            "NAME         SIZE   STATUS\n\
             a            1 GiB  available\n\
             longer-name  512 B\n"
        );
    }

    #[test]
    fn short_rows_are_padded_and_long_rows_cut() {
        let mut t = Table::new(&["A", "B"]);
        t.row(["x"]);
        t.row(["1", "2", "3"]);
        assert_eq!(t.render(), "A  B\nx\n1  2\n");
    }

    #[test]
    fn control_characters_are_escaped() {
        let mut t = Table::new(&["NAME"]);
        t.row(["evil\u{1b}[31mred\nline"]);
        let out = t.render();
        assert!(!out.contains('\u{1b}'));
        assert!(out.contains("evil\\u{1b}[31mred\\nline"), "{out}");
        assert_eq!(sanitize("plain"), "plain");
    }

    #[test]
    fn bidi_and_zero_width_characters_cannot_reorder_or_hide_a_cell() {
        let mut t = Table::new(&["NAME", "STATUS"]);
        t.row(["invoice\u{202e}fdp.exe", "ok"]);
        t.row(["a\u{200b}b\u{2066}c\u{feff}d\u{2028}e", "ok"]);
        let out = t.render();
        assert_eq!(out.lines().count(), 3, "{out:?}");
        assert!(
            out.lines()
                .all(|l| !l.chars().any(crate::display_text::is_hidden)),
            "{out:?}"
        );
        assert!(out.contains("invoice\\u{202e}fdp.exe"), "{out}");
        assert!(
            out.contains("a\\u{200b}b\\u{2066}c\\u{feff}d\\u{2028}e"),
            "{out}"
        );
        assert_eq!(
            key_values(&[("name", "x\u{202d}y".into())]),
            "name:  x\\u{202d}y\n"
        );
    }

    #[test]
    fn key_values_align() {
        let out = key_values(&[("id", "x".into()), ("status", "in-use".into())]);
        assert_eq!(out, "id:      x\nstatus:  in-use\n");
    }

    #[test]
    fn sizes_for_people() {
        assert_eq!(format_size(0), "0 B");
        assert_eq!(format_size(512), "512 B");
        assert_eq!(format_size(1024), "1 KiB");
        assert_eq!(format_size(1 << 30), "1 GiB");
        assert_eq!(format_size(3 << 29), "1.5 GiB");
        assert_eq!(format_size(256 << 30), "256 GiB");
        assert_eq!(format_size(1 << 40), "1 TiB");
        assert_eq!(format_size(u64::MAX), "16.0 EiB");
    }
}
