//! Splitting a script's command string into words, as keepalived does for `script`,
//! `notify_*` and `vrrp_script` strings (lib/parser.c, `alloc_strvec_quoted_escaped`):
//! words are separated by white space; `"` and `'` quote (the quotes are removed, the white
//! space inside is kept, and a quote of the other kind is literal); a backslash escapes, inside
//! or outside quotes, with C's escapes plus `\E` (ESC), `\cC` (control-C), `\NNN` (octal) and
//! `\xHH` (hex). No shell is involved: `$`, `;`, `|` and `*` are ordinary characters.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt as _;

/// keepalived's `WHITE_SPACE_STR`.
const WHITE_SPACE: &[u8] = b" \t\x0c\n\r\x0b";

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SplitError {
    #[error("the command is empty")]
    Empty,
    #[error("command {command:?}: missing terminating {quote}")]
    UnterminatedQuote { command: String, quote: char },
    #[error("command {command:?}: a backslash at the end escapes nothing")]
    TrailingBackslash { command: String },
}

/// The words of `command`; the first is the program.
///
/// # Errors
/// The command has no word, an unterminated quote, or ends in a lone backslash.
pub fn split(command: &str) -> Result<Vec<OsString>, SplitError> {
    let bytes = command.as_bytes();
    let mut words = Vec::new();
    let mut i = 0;
    loop {
        while i < bytes.len() && WHITE_SPACE.contains(&bytes[i]) {
            i += 1;
        }
        if i == bytes.len() {
            break;
        }
        let mut word = Vec::new();
        let mut quote = None;
        while i < bytes.len() {
            let b = bytes[i];
            match (b, quote) {
                (b'\\', _) => {
                    let (byte, used) =
                        escape(&bytes[i + 1..]).ok_or_else(|| SplitError::TrailingBackslash {
                            command: command.to_owned(),
                        })?;
                    word.push(byte);
                    i += 1 + used;
                }
                (b'"' | b'\'', None) => {
                    quote = Some(b);
                    i += 1;
                }
                (_, Some(q)) if b == q => {
                    quote = None;
                    i += 1;
                }
                (_, None) if WHITE_SPACE.contains(&b) => break,
                _ => {
                    word.push(b);
                    i += 1;
                }
            }
        }
        if let Some(q) = quote {
            return Err(SplitError::UnterminatedQuote {
                command: command.to_owned(),
                quote: char::from(q),
            });
        }
        words.push(OsString::from_vec(word));
    }
    if words.is_empty() {
        return Err(SplitError::Empty);
    }
    Ok(words)
}

/// The byte an escape after a backslash stands for, and how many bytes it took; `None` when
/// nothing follows the backslash.
fn escape(rest: &[u8]) -> Option<(u8, usize)> {
    let first = *rest.first()?;
    let hex = |b: u8| char::from(b).to_digit(16);
    let octal = |b: u8| (b'0'..=b'7').contains(&b).then(|| b - b'0');
    Some(match first {
        b'x' if rest.get(1).copied().and_then(hex).is_some() => {
            let mut value = 0u32;
            let mut used = 1;
            for &b in rest[1..].iter().take(2) {
                let Some(d) = hex(b) else { break };
                value = value * 16 + d;
                used += 1;
            }
            // At most two hex digits: always within a byte.
            (u8::try_from(value).unwrap_or(u8::MAX), used)
        }
        b'c' if rest.len() > 1 => (rest[1] & 0x1f, 2),
        b'0'..=b'7' => {
            let mut value = 0u8;
            let mut used = 0;
            for &b in rest.iter().take(3) {
                let Some(d) = octal(b) else { break };
                // C's char arithmetic: \777 wraps, as in keepalived.
                value = value.wrapping_mul(8).wrapping_add(d);
                used += 1;
            }
            (value, used)
        }
        b'a' => (0x07, 1),
        b'b' => (0x08, 1),
        b'E' => (0x1b, 1),
        b'f' => (0x0c, 1),
        b'n' => (b'\n', 1),
        b'r' => (b'\r', 1),
        b't' => (b'\t', 1),
        b'v' => (0x0b, 1),
        other => (other, 1),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        split(s)
            .unwrap()
            .into_iter()
            .map(|w| w.into_string().unwrap())
            .collect()
    }

    #[test]
    fn white_space_separates_and_quotes_group() {
        assert_eq!(words("  /bin/check  -a\tb "), ["/bin/check", "-a", "b"]);
        // The man page's examples (keepalived.conf(5), "Quoted strings").
        assert_eq!(words(r#"abcd" efg h jkl "mnop"#), ["abcd efg h jkl mnop"]);
        assert_eq!(
            words(r#"abcd "efg h jkl" mnop"#),
            ["abcd", "efg h jkl", "mnop"]
        );
        assert_eq!(
            words(r#"a 'say "hi"' "it's""#),
            ["a", r#"say "hi""#, "it's"]
        );
        assert_eq!(words("x ''"), ["x", ""]);
    }

    #[test]
    fn shell_characters_are_literal() {
        assert_eq!(
            words("/s $HOME a;b |c *"),
            ["/s", "$HOME", "a;b", "|c", "*"]
        );
    }

    #[test]
    fn escapes_work_inside_and_outside_quotes() {
        assert_eq!(words(r#"a\ b "c\"d" 'e\'f'"#), ["a b", "c\"d", "e'f"]);
        assert_eq!(words(r"\x41\101\t\cA\q\\"), ["AA\t\u{1}q\\"]);
        assert_eq!(words(r"\x4g"), ["\u{4}g"]);
    }

    #[test]
    fn malformed_commands_are_refused() {
        assert_eq!(split("   "), Err(SplitError::Empty));
        assert!(matches!(
            split("/bin/x 'oops"),
            Err(SplitError::UnterminatedQuote { quote: '\'', .. })
        ));
        assert!(matches!(
            split(r"/bin/x \"),
            Err(SplitError::TrailingBackslash { .. })
        ));
    }
}
