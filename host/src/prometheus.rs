//! A writer of the Prometheus text exposition format (version 0.0.4): one
//! `# HELP` and `# TYPE` line per family, then its samples, with label
//! values escaped. Enough for `/metrics`; no client library needed.

use std::fmt::Write as _;

/// The content type of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Kinds of metric families.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// Only goes up.
    Counter,
    /// Goes up and down.
    Gauge,
    /// Buckets, sum and count.
    Histogram,
}

/// Text being written.
#[derive(Debug, Default)]
pub struct Text {
    out: String,
}

impl Text {
    /// Starts a family: its help text and type.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    /// One sample of the current family.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {}", number(value));
    }

    /// A histogram's samples from per-bucket (not cumulative) counts, the
    /// last count being the overflow bucket.
    pub fn histogram(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        bounds: &[f64],
        counts: &[u64],
        sum: f64,
    ) {
        let mut cumulative = 0u64;
        let bucket = format!("{name}_bucket");
        for (i, c) in counts.iter().enumerate() {
            cumulative += c;
            let le = bounds
                .get(i)
                .map_or_else(|| "+Inf".to_owned(), |b| number(*b));
            let mut l = labels.to_vec();
            l.push(("le", &le));
            self.sample(&bucket, &l, cumulative as f64);
        }
        self.sample(&format!("{name}_sum"), labels, sum);
        self.sample(&format!("{name}_count"), labels, cumulative as f64);
    }

    /// Appends text written elsewhere.
    pub fn append(&mut self, other: Text) {
        self.out.push_str(&other.out);
    }

    /// The finished text.
    pub fn finish(self) -> String {
        self.out
    }
}

/// Which bucket of a histogram with upper `bounds` counts `value`: the
/// first bound at or above it, or `bounds.len()` (the overflow bucket).
pub fn bucket_index(bounds: &[f64], value: f64) -> usize {
    bounds
        .iter()
        .position(|b| value <= *b)
        .unwrap_or(bounds.len())
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn number(v: f64) -> String {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_samples_and_histograms_render_in_text_format() {
        let mut t = Text::default();
        t.family("x_total", Kind::Counter, "Things.\nMore");
        t.sample("x_total", &[("name", "a\"b\\c\nd")], 3.0);
        t.family("lat_seconds", Kind::Histogram, "Latency.");
        t.histogram("lat_seconds", &[("d", "p")], &[0.5, 1.0], &[1, 2, 3], 4.25);
        let s = t.finish();
        assert!(s.contains("# HELP x_total Things.\\nMore\n# TYPE x_total counter\n"));
        assert!(s.contains("x_total{name=\"a\\\"b\\\\c\\nd\"} 3\n"), "{s}");
        assert!(
            s.contains("lat_seconds_bucket{d=\"p\",le=\"0.5\"} 1\n"),
            "{s}"
        );
        assert!(
            s.contains("lat_seconds_bucket{d=\"p\",le=\"1\"} 3\n"),
            "{s}"
        );
        assert!(
            s.contains("lat_seconds_bucket{d=\"p\",le=\"+Inf\"} 6\n"),
            "{s}"
        );
        assert!(s.contains("lat_seconds_sum{d=\"p\"} 4.25\nlat_seconds_count{d=\"p\"} 6\n"));
    }
}
