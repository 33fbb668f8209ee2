//! Finds where a chunked body ends while its bytes pass through unchanged (chunk sizes,
//! extensions and trailers included), and counts its data bytes. Strict as hyper's decoder: a
//! CR LF after every line, hex sizes of at most 16 digits, bounded extensions and trailers.

/// Longest chunk extension, and the most trailer bytes, accepted (hyper allows 16 KiB of each).
const MAX_EXTENSION: usize = 16 * 1024;
const MAX_TRAILERS: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading the hex size; `digits` so far.
    Size {
        digits: u8,
    },
    /// After the size: optional whitespace and `;ext`, up to CR.
    Extension,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    /// At the start of a trailer line, or of the final empty line.
    TrailerStart,
    TrailerLine,
    TrailerLf,
    EndLf,
    Done,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed chunked body")]
pub struct Malformed;

#[derive(Debug)]
pub struct ChunkedScanner {
    state: State,
    /// The current chunk's size while reading it, then what is left of its data.
    size: u64,
    /// Bytes of extension or trailer seen, against their limits.
    extra: usize,
    /// Data bytes so far (without framing).
    pub data: u64,
}

impl Default for ChunkedScanner {
    fn default() -> Self {
        ChunkedScanner {
            state: State::Size { digits: 0 },
            size: 0,
            extra: 0,
            data: 0,
        }
    }
}

impl ChunkedScanner {
    /// Whether the whole body, final empty line included, has been seen.
    pub fn done(&self) -> bool {
        self.state == State::Done
    }

    /// Reads `input` up to the end of the body; returns how many bytes of it belong to the body
    /// (all of them unless the end was reached).
    pub fn scan(&mut self, input: &[u8]) -> Result<usize, Malformed> {
        let mut i = 0;
        while i < input.len() {
            if self.state == State::Data {
                let n = (input.len() - i).min(usize::try_from(self.size).unwrap_or(usize::MAX));
                i += n;
                self.size -= n as u64;
                self.data += n as u64;
                if self.size == 0 {
                    self.state = State::DataCr;
                }
                continue;
            }
            let b = input[i];
            i += 1;
            self.state = match (self.state, b) {
                (State::Size { digits }, _) if b.is_ascii_hexdigit() => {
                    if digits == 16 {
                        return Err(Malformed);
                    }
                    // A hex digit's value: at most 15, so the cast cannot truncate.
                    let d = (b as char).to_digit(16).unwrap_or(0) as u64;
                    self.size = self.size * 16 + d;
                    State::Size { digits: digits + 1 }
                }
                (State::Size { digits }, b'\r') if digits > 0 => State::SizeLf,
                (State::Size { digits }, b';' | b' ' | b'\t') if digits > 0 => {
                    self.extra = 0;
                    State::Extension
                }
                (State::Extension, b'\r') => State::SizeLf,
                (State::Extension, b'\n') => return Err(Malformed),
                (State::Extension, _) => {
                    self.extra += 1;
                    if self.extra > MAX_EXTENSION {
                        return Err(Malformed);
                    }
                    State::Extension
                }
                (State::SizeLf, b'\n') if self.size == 0 => {
                    self.extra = 0;
                    State::TrailerStart
                }
                (State::SizeLf, b'\n') => State::Data,
                (State::DataCr, b'\r') => State::DataLf,
                (State::DataLf, b'\n') => State::Size { digits: 0 },
                (State::TrailerStart, b'\r') => State::EndLf,
                (State::TrailerStart | State::TrailerLine, b'\n') => return Err(Malformed),
                (State::TrailerLine, b'\r') => State::TrailerLf,
                (State::TrailerStart | State::TrailerLine, _) => {
                    self.extra += 1;
                    if self.extra > MAX_TRAILERS {
                        return Err(Malformed);
                    }
                    State::TrailerLine
                }
                (State::TrailerLf, b'\n') => State::TrailerStart,
                (State::EndLf, b'\n') => {
                    self.state = State::Done;
                    return Ok(i);
                }
                (State::Done, _) => return Ok(i - 1),
                _ => return Err(Malformed),
            };
        }
        Ok(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(body: &[u8]) -> Result<(usize, u64, bool), Malformed> {
        let mut s = ChunkedScanner::default();
        let n = s.scan(body)?;
        Ok((n, s.data, s.done()))
    }

    #[test]
    fn finds_the_end_and_counts_data() {
        let body = b"3\r\nabc\r\nA;name=v\r\n0123456789\r\n0\r\n\r\nNEXT";
        assert_eq!(whole(body), Ok((body.len() - 4, 13, true)));
        let trailers = b"1\r\nx\r\n0\r\nx-sum: 1\r\nx-other: 2\r\n\r\n";
        assert_eq!(whole(trailers), Ok((trailers.len(), 1, true)));
    }

    #[test]
    fn any_split_gives_the_same_answer() {
        let body = b"5\r\nhello\r\n1a\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nt: v\r\n\r\n";
        for cut in 0..body.len() {
            let mut s = ChunkedScanner::default();
            let a = s.scan(&body[..cut]).unwrap();
            assert_eq!(a, cut);
            assert!(!s.done());
            let b = s.scan(&body[cut..]).unwrap();
            assert_eq!(a + b, body.len());
            assert!(s.done());
            assert_eq!(s.data, 31);
        }
    }

    #[test]
    fn malformed_bodies_are_refused() {
        for bad in [
            &b"\r\n"[..],
            b"g\r\n",
            b"3\nabc",
            b"3\r\nabcX",
            b"3\r\nabc\rX",
            b"11111111111111111\r\n",
            b"0\r\nbad\n",
            b"3;ext\n",
        ] {
            assert_eq!(
                whole(bad),
                Err(Malformed),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let long_trailer = [b"0\r\n".to_vec(), vec![b'a'; MAX_TRAILERS + 1]].concat();
        assert_eq!(whole(&long_trailer), Err(Malformed));
    }
}
