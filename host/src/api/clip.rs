//! Bounds on client-supplied text (a method, a path, a name echoed in an
//! error) before it reaches a log line or a response: a request may carry
//! kilobytes of it, and it must not be copied whole into either.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Most bytes of a client's text shown in a log line or an error message.
pub const ECHO_BYTES: usize = 256;
/// Most bytes of any error message sent to a client (messages quote names
/// and values the client sent, which may be up to a whole request body).
pub const MESSAGE_BYTES: usize = 1024;

/// `text` cut to at most `max` bytes on a character boundary, with a note of
/// the full length when cut; untouched (borrowed) when it fits.
pub fn clip(text: &str, max: usize) -> Cow<'_, str> {
    if text.len() <= max {
        return Cow::Borrowed(text);
    }
    let end = text.floor_char_boundary(max);
    let mut out = String::with_capacity(end + 32);
    out.push_str(&text[..end]);
    // Writing to a String cannot fail.
    let _ = write!(out, "... ({} bytes)", text.len());
    Cow::Owned(out)
}

/// [`clip`] at [`ECHO_BYTES`]: for one piece of client text.
pub fn echo(text: &str) -> Cow<'_, str> {
    clip(text, ECHO_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_borrowed_and_long_text_cut_on_a_char_boundary() {
        assert!(matches!(echo("GET"), Cow::Borrowed("GET")));
        let exact = "x".repeat(ECHO_BYTES);
        assert_eq!(echo(&exact), exact);
        let long = "é".repeat(200); // 400 bytes of two-byte characters
        let cut = echo(&long);
        assert!(cut.starts_with(&"é".repeat(128)), "{cut}");
        assert!(cut.ends_with("... (400 bytes)"), "{cut}");
        assert!(cut.len() <= ECHO_BYTES + 20);
        // A boundary inside a character moves back to its start.
        assert_eq!(clip("aé", 2), "a... (3 bytes)");
        assert_eq!(clip("", 0), "");
    }
}
