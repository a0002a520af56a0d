//! Stage 3: the plaintext SMTP part of a session, up to the point where TLS starts (STARTTLS,
//! RFC 3207) or where it is clear it never will.
//!
//! Only a handful of lines matter: the greeting, EHLO/HELO, the EHLO reply's STARTTLS keyword,
//! the STARTTLS command and its reply. Everything is line-based; the session stage decides when
//! a direction switches to TLS (by content, see [`crate::tls::looks_like_tls`]), so this module
//! never has to trust ports or reply codes for that. Mail content is never looked at: the first
//! transaction command (MAIL, RCPT, DATA, ...) ends the SMTP stage with "no TLS".

/// Longest line kept (RFC 5321 §4.5.3.1.4 allows 512 for commands, 512 for replies; some
/// servers' EHLO replies and banners run longer, so allow a margin). Longer lines are skipped.
pub const MAX_LINE: usize = 2048;
/// Longest host name or EHLO argument kept in a record.
pub const MAX_NAME: usize = 255;

/// Facts gathered from the plaintext SMTP dialogue.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SmtpFacts {
    /// Reply code of the server's first reply (the greeting), e.g. 220 or 554.
    pub greeting_code: Option<u16>,
    /// First token after the code in the greeting's first line (RFC 5321 §4.3.1: the domain).
    pub banner_host: Option<String>,
    /// Argument of the first EHLO/HELO.
    pub ehlo: Option<String>,
    /// Whether the EHLO reply listed STARTTLS; `None` until an EHLO reply was seen.
    pub starttls_offered: Option<bool>,
    /// The client issued STARTTLS.
    pub starttls_sent: bool,
    /// Reply code to STARTTLS (220 accepted, 454/5xx refused).
    pub starttls_reply_code: Option<u16>,
    /// Plaintext lines seen from each side (client, server): evidence this is SMTP at all.
    pub client_lines: u32,
    pub server_lines: u32,
}

impl SmtpFacts {
    /// STARTTLS issued and accepted (2xx reply).
    pub fn starttls_accepted(&self) -> bool {
        self.starttls_sent && matches!(self.starttls_reply_code, Some(200..=299))
    }
}

/// What a client line means for the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientEvent {
    /// Nothing that changes the session's course.
    Other,
    /// The client moved on to a mail transaction (or quit) in plaintext: TLS will not start.
    ProceedsWithoutTls,
}

/// Per-session SMTP state machine over complete lines (without the line ending).
#[derive(Debug, Default)]
pub struct Smtp {
    pub facts: SmtpFacts,
    ehlo_sent: bool,
    /// A multi-line EHLO reply is in progress and listed STARTTLS so far.
    reply_has_starttls: bool,
    awaiting_starttls_reply: bool,
}

impl Smtp {
    /// The connection's start was not captured: the first server line seen is not the
    /// greeting, so no banner is taken from it.
    pub fn skip_greeting(&mut self) {
        self.facts.greeting_code = Some(0);
    }

    /// One line from the client.
    pub fn client_line(&mut self, line: &[u8]) -> ClientEvent {
        self.facts.client_lines += 1;
        let (verb, arg) = split_verb(line);
        if verb.eq_ignore_ascii_case(b"EHLO") || verb.eq_ignore_ascii_case(b"HELO") {
            // Only an EHLO reply lists extensions (RFC 5321 §4.1.1.1); after HELO whether
            // STARTTLS would have been offered is unknown.
            self.ehlo_sent |= verb.eq_ignore_ascii_case(b"EHLO");
            if self.facts.ehlo.is_none() {
                let name = first_token(arg);
                self.facts.ehlo = Some(printable(name));
            }
            ClientEvent::Other
        } else if verb.eq_ignore_ascii_case(b"STARTTLS") {
            self.facts.starttls_sent = true;
            self.awaiting_starttls_reply = true;
            ClientEvent::Other
        } else if [&b"MAIL"[..], b"RCPT", b"DATA", b"BDAT", b"QUIT", b"AUTH"]
            .iter()
            .any(|v| verb.eq_ignore_ascii_case(v))
        {
            ClientEvent::ProceedsWithoutTls
        } else {
            ClientEvent::Other
        }
    }

    /// One line from the server. Returns the reply code when the line ends a reply.
    pub fn server_line(&mut self, line: &[u8]) -> Option<u16> {
        self.facts.server_lines += 1;
        let code = reply_code(line)?;
        // RFC 5321 §4.2.1: "ddd-" continues a multi-line reply, "ddd " or "ddd" ends it.
        let last = line.get(3) != Some(&b'-');
        let text = line.get(4..).unwrap_or(&[]);
        if self.facts.greeting_code.is_none() {
            if self.facts.banner_host.is_none() && !text.is_empty() {
                let host = first_token(text);
                if !host.is_empty() {
                    self.facts.banner_host = Some(printable(host));
                }
            }
            if last {
                self.facts.greeting_code = Some(code);
            }
            return last.then_some(code);
        }
        if self.ehlo_sent && self.facts.starttls_offered.is_none() {
            if first_token(text).eq_ignore_ascii_case(b"STARTTLS") {
                self.reply_has_starttls = true;
            }
            if last && code / 100 == 2 {
                self.facts.starttls_offered = Some(self.reply_has_starttls);
            }
        }
        if last && self.awaiting_starttls_reply {
            self.awaiting_starttls_reply = false;
            self.facts.starttls_reply_code = Some(code);
        }
        last.then_some(code)
    }
}

fn reply_code(line: &[u8]) -> Option<u16> {
    let d = line.get(..3)?;
    if !d.iter().all(u8::is_ascii_digit) {
        return None;
    }
    match line.get(3) {
        None | Some(b' ') | Some(b'-') | Some(b'\t') => {}
        _ => return None,
    }
    Some(u16::from(d[0] - b'0') * 100 + u16::from(d[1] - b'0') * 10 + u16::from(d[2] - b'0'))
}

fn split_verb(line: &[u8]) -> (&[u8], &[u8]) {
    let line = trim(line);
    match line.iter().position(|&b| b == b' ' || b == b'\t') {
        Some(i) => (&line[..i], trim(&line[i + 1..])),
        None => (line, &[]),
    }
}

fn first_token(s: &[u8]) -> &[u8] {
    let s = trim(s);
    let end = s
        .iter()
        .position(|&b| b == b' ' || b == b'\t')
        .unwrap_or(s.len());
    &s[..end]
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    &s[start..end.max(start)]
}

/// Peer-supplied text for a record: bounded, printable ASCII kept, anything else as `\xNN`, so
/// odd bytes stay visible (and JSON stays valid) instead of killing the flow.
pub fn printable(s: &[u8]) -> String {
    let s = &s[..s.len().min(MAX_NAME)];
    let mut out = String::with_capacity(s.len());
    for &b in s {
        if (0x20..0x7f).contains(&b) && b != b'\\' {
            out.push(b as char);
        } else {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// Splits a byte stream into lines, bounded by [`MAX_LINE`]. Returns `(line, consumed)` for the
/// first complete line in `buf` (without CR LF), or `None` when more bytes are needed.
/// A line longer than the bound is returned cut at the bound and the rest is skipped by the
/// caller through [`LineSplitter::skipping`].
#[derive(Debug, Default)]
pub struct LineSplitter {
    /// Inside an over-long line: drop bytes until the next LF.
    pub skipping: bool,
    pub long_lines: u64,
}

/// Result of one [`LineSplitter::next_line`] call.
#[derive(Debug, PartialEq, Eq)]
pub enum Line<'a> {
    /// A complete line (line ending stripped) and the bytes it used.
    Complete(&'a [u8], usize),
    /// Bytes dropped (part of an over-long line).
    Skipped(usize),
    /// No complete line yet.
    NeedMore,
}

impl LineSplitter {
    pub fn next_line<'a>(&mut self, buf: &'a [u8]) -> Line<'a> {
        match memchr::memchr(b'\n', buf) {
            Some(i) if self.skipping => {
                self.skipping = false;
                Line::Skipped(i + 1)
            }
            Some(i) if i > MAX_LINE => {
                self.long_lines += 1;
                Line::Skipped(i + 1)
            }
            Some(i) => {
                let mut line = &buf[..i];
                if let [rest @ .., b'\r'] = line {
                    line = rest;
                }
                Line::Complete(line, i + 1)
            }
            None if self.skipping => Line::Skipped(buf.len()),
            None if buf.len() > MAX_LINE => {
                self.long_lines += 1;
                self.skipping = true;
                Line::Skipped(buf.len())
            }
            None => Line::NeedMore,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dialogue(lines: &[(&str, &str)]) -> Smtp {
        let mut s = Smtp::default();
        for (who, line) in lines {
            if *who == "S" {
                s.server_line(line.as_bytes());
            } else {
                s.client_line(line.as_bytes());
            }
        }
        s
    }

    #[test]
    fn starttls_accepted() {
        let s = dialogue(&[
            ("S", "220 mx.test.example ESMTP Postfix"),
            ("C", "EHLO client.example"),
            ("S", "250-mx.test.example"),
            ("S", "250-PIPELINING"),
            ("S", "250-STARTTLS"),
            ("S", "250 8BITMIME"),
            ("C", "STARTTLS"),
            ("S", "220 2.0.0 Ready to start TLS"),
        ]);
        assert_eq!(s.facts.banner_host.as_deref(), Some("mx.test.example"));
        assert_eq!(s.facts.greeting_code, Some(220));
        assert_eq!(s.facts.ehlo.as_deref(), Some("client.example"));
        assert_eq!(s.facts.starttls_offered, Some(true));
        assert!(s.facts.starttls_accepted());
        assert_eq!(s.facts.starttls_reply_code, Some(220));
    }

    #[test]
    fn starttls_refused_and_not_offered() {
        let s = dialogue(&[
            ("S", "220-mx.example first line"),
            ("S", "220 second line"),
            ("C", "ehlo [198.18.0.2]"),
            ("S", "250 mx.example"),
            ("C", "STARTTLS"),
            ("S", "454 4.7.0 TLS not available due to local problem"),
        ]);
        assert_eq!(s.facts.banner_host.as_deref(), Some("mx.example"));
        assert_eq!(s.facts.ehlo.as_deref(), Some("[198.18.0.2]"));
        assert_eq!(s.facts.starttls_offered, Some(false));
        assert!(!s.facts.starttls_accepted());
        assert_eq!(s.facts.starttls_reply_code, Some(454));
    }

    #[test]
    fn transaction_commands_end_the_smtp_stage() {
        let mut s = Smtp::default();
        assert_eq!(s.client_line(b"HELO x"), ClientEvent::Other);
        assert_eq!(
            s.client_line(b"MAIL FROM:<a@b>"),
            ClientEvent::ProceedsWithoutTls
        );
        assert_eq!(s.client_line(b"quit"), ClientEvent::ProceedsWithoutTls);
    }

    #[test]
    fn helo_reply_says_nothing_about_starttls() {
        let s = dialogue(&[("S", "220 mx ESMTP"), ("C", "HELO c"), ("S", "250 mx")]);
        assert_eq!(s.facts.ehlo.as_deref(), Some("c"));
        assert_eq!(s.facts.starttls_offered, None);
    }

    #[test]
    fn odd_bytes_stay_visible() {
        assert_eq!(printable(b"a\xffb\\"), "a\\xffb\\x5c");
        let s = dialogue(&[("S", "220 \x01host\x7f x")]);
        assert_eq!(s.facts.banner_host.as_deref(), Some("\\x01host\\x7f"));
    }

    #[test]
    fn line_splitter_bounds_and_crlf() {
        let mut sp = LineSplitter::default();
        assert_eq!(sp.next_line(b"abc\r\nde"), Line::Complete(b"abc", 5));
        assert_eq!(sp.next_line(b"de"), Line::NeedMore);
        let long = vec![b'x'; MAX_LINE + 10];
        assert_eq!(sp.next_line(&long), Line::Skipped(long.len()));
        assert!(sp.skipping);
        assert_eq!(sp.next_line(b"yy\nok\n"), Line::Skipped(3));
        assert_eq!(sp.next_line(b"ok\n"), Line::Complete(b"ok", 3));
        assert_eq!(sp.long_lines, 1);
    }
}
