//! keepalived.conf's words, one line at a time (keepalived's own parser is line based: a
//! quoted string never spans lines, a comment runs to the end of its line).

/// What a line is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenKind {
    Word(String),
    Open,
    Close,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub kind: TokenKind,
    /// 1-based, in characters.
    pub column: usize,
}

/// A line that cannot be split into words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LexError {
    pub column: usize,
    pub expected: &'static str,
}

/// Splits one line into words and braces. `!` and `#` start a comment anywhere outside quotes;
/// `"` and `'` quote (the quotes go, the spaces between them stay, and quoted and unquoted
/// parts that touch make one word, as in keepalived.conf(5) "Quoted strings").
///
/// # Errors
/// A quote is not closed on its line.
pub fn tokens(line: &str) -> Result<Vec<Token>, LexError> {
    let mut out = Vec::new();
    let mut chars = line.chars().enumerate().peekable();
    let mut word: Option<(String, usize)> = None;
    let flush = |word: &mut Option<(String, usize)>, out: &mut Vec<Token>| {
        if let Some((text, column)) = word.take() {
            out.push(Token {
                kind: TokenKind::Word(text),
                column,
            });
        }
    };
    while let Some((i, c)) = chars.next() {
        let column = i + 1;
        match c {
            '!' | '#' => break,
            '{' | '}' => {
                flush(&mut word, &mut out);
                out.push(Token {
                    kind: if c == '{' {
                        TokenKind::Open
                    } else {
                        TokenKind::Close
                    },
                    column,
                });
            }
            c if c.is_whitespace() => flush(&mut word, &mut out),
            '"' | '\'' => {
                let (text, _) = word.get_or_insert_with(|| (String::new(), column));
                let mut closed = false;
                while let Some((_, q)) = chars.next() {
                    if q == c {
                        closed = true;
                        break;
                    }
                    if q == '\\' {
                        escape(&mut chars, text);
                    } else {
                        text.push(q);
                    }
                }
                if !closed {
                    return Err(LexError {
                        column,
                        expected: if c == '"' {
                            "a closing \" on the same line"
                        } else {
                            "a closing ' on the same line"
                        },
                    });
                }
            }
            c => word
                .get_or_insert_with(|| (String::new(), column))
                .0
                .push(c),
        }
    }
    flush(&mut word, &mut out);
    Ok(out)
}

/// One backslash escape inside quotes, as keepalived.conf(5) lists them.
fn escape(chars: &mut std::iter::Peekable<impl Iterator<Item = (usize, char)>>, text: &mut String) {
    let Some((_, e)) = chars.next() else {
        text.push('\\');
        return;
    };
    let simple = match e {
        'a' => Some('\x07'),
        'b' => Some('\x08'),
        'E' => Some('\x1b'),
        'f' => Some('\x0c'),
        'n' => Some('\n'),
        'r' => Some('\r'),
        't' => Some('\t'),
        'v' => Some('\x0b'),
        _ => None,
    };
    if let Some(s) = simple {
        text.push(s);
        return;
    }
    let mut number = |radix: u32, first: Option<char>, max: usize| {
        let mut value = first.and_then(|d| d.to_digit(radix)).unwrap_or(0);
        let mut taken = usize::from(first.is_some());
        while taken < max {
            match chars.peek().and_then(|&(_, d)| d.to_digit(radix)) {
                Some(d) => {
                    value = (value * radix + d) & 0xff;
                    taken += 1;
                    chars.next();
                }
                None => break,
            }
        }
        char::from(u8::try_from(value).unwrap_or(0))
    };
    match e {
        '0'..='7' => text.push(number(8, Some(e), 3)),
        'x' => text.push(number(16, None, usize::MAX)),
        'c' => match chars.next() {
            Some((_, c)) if c.is_ascii() => {
                text.push(char::from(c.to_ascii_uppercase() as u8 ^ 0x40));
            }
            Some((_, c)) => text.push(c),
            None => {}
        },
        other => text.push(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        tokens(line)
            .unwrap()
            .into_iter()
            .map(|t| match t.kind {
                TokenKind::Word(w) => w,
                TokenKind::Open => "{".into(),
                TokenKind::Close => "}".into(),
            })
            .collect()
    }

    #[test]
    fn quotes_follow_the_manual() {
        assert_eq!(words(r#"abcd" efg h jkl "mnop"#), ["abcd efg h jkl mnop"]);
        assert_eq!(
            words(r#"abcd "efg h jkl" mnop"#),
            ["abcd", "efg h jkl", "mnop"]
        );
        assert_eq!(words(r"script '/bin/x a b'"), ["script", "/bin/x a b"]);
        assert_eq!(words(r#""a\tb\"c\\\x41\101""#), ["a\tb\"c\\AA"]);
    }

    #[test]
    fn comments_and_braces_split_anywhere() {
        assert_eq!(
            words("vrrp_instance VI_1{ # comment"),
            ["vrrp_instance", "VI_1", "{"]
        );
        assert_eq!(words("  weight 2 ! note"), ["weight", "2"]);
        assert_eq!(words(r#"path "/a#b""#), ["path", "/a#b"]);
        assert_eq!(words("}}"), ["}", "}"]);
    }

    #[test]
    fn columns_count_characters_from_one() {
        let t = tokens("  ab  {").unwrap();
        assert_eq!((t[0].column, t[1].column), (3, 7));
    }

    #[test]
    fn unterminated_quote_is_an_error_not_a_panic() {
        assert_eq!(tokens("a \"b").unwrap_err().column, 3);
        assert!(tokens("\"\\").is_err());
        assert!(tokens("'\\c").is_err());
        assert_eq!(words("'\\cc'"), ["\x03"]);
    }
}
