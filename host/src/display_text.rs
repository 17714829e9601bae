//! Characters that can disguise text shown to people: control characters,
//! Unicode format characters (bidirectional overrides, zero-width marks),
//! line and paragraph separators, private-use and other unassigned code
//! points. The service refuses them in names a client sets; the CLI escapes
//! them in whatever it prints, so a record stored before the rule cannot
//! spoof a table either. One table, so both sides agree.

use std::borrow::Cow;

/// Inclusive code point ranges that are refused and escaped, sorted, with
/// what each is. General category Cf is listed in full (Unicode 15.1), as
/// are Cc, Zl, Zp, Co and the noncharacters; of the unassigned code points
/// only the whole planes and blocks that are cheap to name (a full table of
/// unassigned code points would need a Unicode database).
const HIDDEN: &[(u32, u32, &str)] = &[
    (0x0000, 0x001F, "a control character"),
    (0x007F, 0x009F, "a control character"),
    (0x00AD, 0x00AD, "a soft hyphen (invisible)"),
    (0x0600, 0x0605, "an Arabic format character"),
    (0x061C, 0x061C, "a bidirectional mark"),
    (0x06DD, 0x06DD, "an Arabic format character"),
    (0x070F, 0x070F, "a Syriac format character"),
    (0x0890, 0x0891, "an Arabic format character"),
    (0x08E2, 0x08E2, "an Arabic format character"),
    (0x180E, 0x180E, "a Mongolian vowel separator (invisible)"),
    (0x200B, 0x200D, "a zero-width character"),
    (0x200E, 0x200F, "a bidirectional mark"),
    (0x2028, 0x2029, "a line or paragraph separator"),
    (0x202A, 0x202E, "a bidirectional embedding or override"),
    (0x2060, 0x2064, "a zero-width character"),
    (0x2065, 0x2065, "an unassigned code point"),
    (0x2066, 0x2069, "a bidirectional isolate"),
    (0x206A, 0x206F, "a deprecated format character"),
    (0xE000, 0xF8FF, "a private-use character"),
    (0xFDD0, 0xFDEF, "a noncharacter"),
    (
        0xFEFF,
        0xFEFF,
        "a zero-width no-break space (byte order mark)",
    ),
    (0xFFF0, 0xFFF8, "an unassigned code point"),
    (0xFFF9, 0xFFFB, "an interlinear annotation character"),
    (0x110BD, 0x110BD, "a Kaithi format character"),
    (0x110CD, 0x110CD, "a Kaithi format character"),
    (0x13430, 0x1343F, "an Egyptian hieroglyph format character"),
    (0x1BCA0, 0x1BCA3, "a shorthand format character"),
    (0x1D173, 0x1D17A, "a musical symbol format character"),
    (0x40000, 0xDFFFF, "an unassigned code point"),
    (0xE0000, 0xE007F, "a tag character (invisible)"),
    (0xF0000, 0x10FFFF, "a private-use character"),
];

/// What `c` is, if it is a character that must not reach a person's
/// screen as it is.
pub fn hidden_kind(c: char) -> Option<&'static str> {
    let cp = u32::from(c);
    // The last two code points of every plane are noncharacters.
    if cp & 0xFFFE == 0xFFFE {
        return Some("a noncharacter");
    }
    let i = HIDDEN.partition_point(|&(_, last, _)| last < cp);
    HIDDEN
        .get(i)
        .filter(|&&(first, _, _)| first <= cp)
        .map(|&(_, _, kind)| kind)
}

/// Whether `c` must be refused in a name and escaped when printed.
pub fn is_hidden(c: char) -> bool {
    hidden_kind(c).is_some()
}

/// The first character of `text` that must not be shown as it is, with
/// its position in characters (0-based) and what it is.
pub fn first_hidden(text: &str) -> Option<(usize, char, &'static str)> {
    text.chars()
        .enumerate()
        .find_map(|(i, c)| hidden_kind(c).map(|kind| (i, c, kind)))
}

/// `U+202E`: how messages name a code point.
pub fn code_point(c: char) -> String {
    format!("U+{:04X}", u32::from(c))
}

/// `text` with every hidden character written as a Rust escape (`\n`,
/// `\u{202e}`), so it shows what is there instead of acting on the
/// terminal or reordering the line.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_hidden) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if is_hidden(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_sorted_and_disjoint() {
        for w in HIDDEN.windows(2) {
            assert!(w[0].0 <= w[0].1 && w[0].1 < w[1].0, "{w:?}");
        }
    }

    #[test]
    fn spoofing_characters_are_hidden() {
        let hidden = [
            '\0',
            '\t',
            '\n',
            '\r',
            '\u{1b}',
            '\u{7f}',
            '\u{85}',
            '\u{9f}',
            '\u{ad}',
            '\u{61c}',
            '\u{180e}',
            '\u{200b}',
            '\u{200c}',
            '\u{200d}',
            '\u{200e}',
            '\u{200f}',
            '\u{2028}',
            '\u{2029}',
            '\u{202a}',
            '\u{202b}',
            '\u{202c}',
            '\u{202d}',
            '\u{202e}',
            '\u{2060}',
            '\u{2066}',
            '\u{2067}',
            '\u{2068}',
            '\u{2069}',
            '\u{feff}',
            '\u{e000}',
            '\u{f8ff}',
            '\u{fdd0}',
            '\u{fffe}',
            '\u{ffff}',
            '\u{1fffe}',
            '\u{e0001}',
            '\u{e0041}',
            '\u{f0000}',
            '\u{10fffd}',
            '\u{50000}',
        ];
        for c in hidden {
            assert!(is_hidden(c), "{} is not hidden", code_point(c));
        }
        assert_eq!(
            hidden_kind('\u{202e}'),
            Some("a bidirectional embedding or override")
        );
        assert_eq!(hidden_kind('\u{2067}'), Some("a bidirectional isolate"));
        assert_eq!(hidden_kind('\u{200b}'), Some("a zero-width character"));
    }

    #[test]
    fn ordinary_text_of_any_script_is_shown() {
        let shown = "db-01 Prod_Volume été Ω Привет 数据库 مرحبا שלום नमस्ते 🚀 a\u{a0}b";
        assert_eq!(first_hidden(shown), None, "{shown}");
        for c in [
            'a',
            ' ',
            '~',
            '\u{a0}',
            '\u{fe0f}',
            '\u{e0100}',
            '\u{fffd}',
            '\u{1f680}',
        ] {
            assert!(!is_hidden(c), "{} is hidden", code_point(c));
        }
    }

    #[test]
    fn the_first_hidden_character_is_named_with_its_position() {
        assert_eq!(
            first_hidden("invoice\u{202e}fdp.exe"),
            Some((7, '\u{202e}', "a bidirectional embedding or override"))
        );
        assert_eq!(code_point('\u{202e}'), "U+202E");
        assert_eq!(code_point('\u{7}'), "U+0007");
        assert_eq!(code_point('\u{e0001}'), "U+E0001");
    }

    #[test]
    fn escaping_makes_hidden_characters_visible() {
        assert!(matches!(escape("plain ü"), Cow::Borrowed("plain ü")));
        assert_eq!(
            escape("a\u{202e}b\u{200b}c\nd\u{1b}[31m"),
            "a\\u{202e}b\\u{200b}c\\nd\\u{1b}[31m"
        );
    }
}
