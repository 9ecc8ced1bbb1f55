//! Text normalisation: what Teams sends, as the words a person typed.

// ---------------------------------------------------------------------------
// Normalisation
// ---------------------------------------------------------------------------

/// Removes every `<at …>…</at>` mention, strips simple HTML tags such as
/// `<p>`, `<div>`, `<br>` and `<span …>`, decodes `&nbsp;`, `&amp;`, `&lt;`,
/// `&gt;`, `&quot;`, `&apos;`, smart-quote and numeric entities, turns every
/// run of whitespace (including U+00A0, tabs, newlines and zero-width spaces)
/// into one space, and trims.
///
/// A `<` that does not start a recognised tag, as in `a<b`, is kept.
pub fn normalize(text: &str) -> String {
    let without_tags = strip_tags(text);
    let decoded = decode_entities(&without_tags);
    collapse_whitespace(&decoded)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TagKind {
    /// `<at>`: the whole element, text included, is a mention and goes.
    Mention,
    /// Tags that separate words (`<p>`, `<br>`): replaced by a space.
    Block,
    /// Tags inside a run of text (`<b>`, `<span>`): removed without a trace.
    Inline,
}

struct Tag {
    kind: TagKind,
    closing: bool,
    /// Byte index just past the tag's `>`.
    end: usize,
}

fn tag_kind(name: &[u8]) -> Option<TagKind> {
    let kind = match name.to_ascii_lowercase().as_slice() {
        b"at" => TagKind::Mention,
        b"p" | b"div" | b"br" | b"hr" | b"li" | b"ul" | b"ol" | b"blockquote" | b"pre" | b"h1"
        | b"h2" | b"h3" | b"h4" | b"h5" | b"h6" | b"table" | b"thead" | b"tbody" | b"tr"
        | b"td" | b"th" => TagKind::Block,
        b"span" | b"b" | b"i" | b"u" | b"s" | b"strong" | b"em" | b"code" | b"a" | b"font"
        | b"sup" | b"sub" | b"del" | b"ins" | b"strike" | b"mark" | b"small" | b"img"
        | b"emoji" => TagKind::Inline,
        _ => return None,
    };
    Some(kind)
}

/// Reads a tag starting at `bytes[start] == b'<'`: a known tag name, then
/// well-formed attributes, then `>` or `/>`. Anything else is not a tag.
fn parse_tag(bytes: &[u8], start: usize) -> Option<Tag> {
    let mut i = start + 1;
    let closing = bytes.get(i) == Some(&b'/');
    if closing {
        i += 1;
    }
    let name_start = i;
    while bytes.get(i).is_some_and(u8::is_ascii_alphanumeric) {
        i += 1;
    }
    let name = &bytes[name_start..i];
    if !name.first().is_some_and(u8::is_ascii_alphabetic) {
        return None;
    }
    let kind = tag_kind(name)?;
    loop {
        let before_space = i;
        i = skip_ascii_space(bytes, i);
        match *bytes.get(i)? {
            b'>' => {
                return Some(Tag {
                    kind,
                    closing,
                    end: i + 1,
                });
            }
            b'/' if bytes.get(i + 1) == Some(&b'>') => {
                return Some(Tag {
                    kind,
                    closing,
                    end: i + 2,
                });
            }
            // Attributes must be separated by space, and closing tags have none.
            _ if i == before_space || closing => return None,
            _ => i = skip_attribute(bytes, i)?,
        }
    }
}

fn skip_ascii_space(bytes: &[u8], mut i: usize) -> usize {
    while bytes.get(i).is_some_and(u8::is_ascii_whitespace) {
        i += 1;
    }
    i
}

/// Skips `name`, `name=value`, `name="value"` or `name='value'`.
fn skip_attribute(bytes: &[u8], mut i: usize) -> Option<usize> {
    let name_start = i;
    while bytes
        .get(i)
        .is_some_and(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b':' | b'.'))
    {
        i += 1;
    }
    if i == name_start {
        return None;
    }
    let mut j = skip_ascii_space(bytes, i);
    if bytes.get(j) != Some(&b'=') {
        return Some(i);
    }
    j = skip_ascii_space(bytes, j + 1);
    match *bytes.get(j)? {
        quote @ (b'"' | b'\'') => {
            let length = bytes[j + 1..].iter().position(|&b| b == quote)?;
            Some(j + 1 + length + 1)
        }
        _ => {
            let value_start = j;
            while bytes.get(j).is_some_and(|b| {
                !b.is_ascii_whitespace() && !matches!(b, b'>' | b'<' | b'"' | b'\'' | b'=' | b'`')
            }) {
                j += 1;
            }
            (j > value_start).then_some(j)
        }
    }
}

/// Finds the `</at>` closing a mention, returning the index just past it.
fn find_mention_close(bytes: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while let Some(offset) = bytes[i..].iter().position(|&b| b == b'<') {
        let lt = i + offset;
        let is_close = bytes.get(lt + 1) == Some(&b'/')
            && bytes
                .get(lt + 2)
                .is_some_and(|b| b.eq_ignore_ascii_case(&b'a'))
            && bytes
                .get(lt + 3)
                .is_some_and(|b| b.eq_ignore_ascii_case(&b't'));
        if is_close {
            let j = skip_ascii_space(bytes, lt + 4);
            if bytes.get(j) == Some(&b'>') {
                return Some(j + 1);
            }
        }
        i = lt + 1;
    }
    None
}

fn strip_tags(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    // Bytes before `copied` are already in `out` (or dropped).
    let mut copied = 0;
    let mut search = 0;
    // Once a search for `</at>` fails, every later one would fail too.
    let mut no_mention_close = false;
    while let Some(offset) = text[search..].find('<') {
        let lt = search + offset;
        let Some(tag) = parse_tag(bytes, lt) else {
            search = lt + 1;
            continue;
        };
        out.push_str(&text[copied..lt]);
        let mut end = tag.end;
        match tag.kind {
            TagKind::Inline => {}
            TagKind::Block => out.push(' '),
            TagKind::Mention => {
                out.push(' ');
                if !tag.closing && !no_mention_close {
                    match find_mention_close(bytes, tag.end) {
                        Some(close_end) => end = close_end,
                        // An unclosed `<at>`: drop just the opening tag.
                        None => no_mention_close = true,
                    }
                }
            }
        }
        copied = end;
        search = end;
    }
    out.push_str(&text[copied..]);
    out
}

fn decode_entities(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        match decode_entity(after) {
            Some((decoded, used)) => {
                out.push(decoded);
                rest = &after[used..];
            }
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Decodes the entity at the start of `after` (the text following `&`),
/// returning the character and how many bytes it used, `;` included.
fn decode_entity(after: &str) -> Option<(char, usize)> {
    let semicolon = after.bytes().take(12).position(|b| b == b';')?;
    let name = &after[..semicolon];
    let decoded = if let Some(number) = name.strip_prefix('#') {
        let code = match number.strip_prefix(['x', 'X']) {
            Some(hex) => u32::from_str_radix(hex, 16).ok()?,
            None => number.parse::<u32>().ok()?,
        };
        char::from_u32(code)?
    } else {
        match name.to_ascii_lowercase().as_str() {
            "nbsp" => ' ',
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            "ldquo" => '\u{201C}',
            "rdquo" => '\u{201D}',
            "lsquo" => '\u{2018}',
            "rsquo" => '\u{2019}',
            _ => return None,
        }
    };
    Some((decoded, semicolon + 1))
}

fn collapse_whitespace(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut pending_space = false;
    for c in text.chars() {
        if c.is_whitespace() || matches!(c, '\u{200B}' | '\u{FEFF}') {
            pending_space = true;
            continue;
        }
        if pending_space && !out.is_empty() {
            out.push(' ');
        }
        pending_space = false;
        out.push(c);
    }
    out
}
