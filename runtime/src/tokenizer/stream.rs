//! Streaming detokenization: token bytes in, complete UTF-8 text out, never splitting a character.

/// Accumulates token bytes and releases the longest valid UTF-8 prefix.
#[derive(Debug, Default)]
pub struct StreamDecoder {
    pending: Vec<u8>,
}

impl StreamDecoder {
    /// Adds a token's bytes and returns the text that is now complete (possibly empty).
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        // Release everything up to an incomplete sequence at the very end (kept for the next token). Bytes that can
        // never become valid are released too (as U+FFFD) rather than stalling the stream.
        let mut valid = 0;
        loop {
            match std::str::from_utf8(&self.pending[valid..]) {
                Ok(_) => {
                    valid = self.pending.len();
                    break;
                }
                Err(e) => match e.error_len() {
                    None => {
                        valid += e.valid_up_to();
                        break;
                    }
                    Some(bad) => valid += e.valid_up_to() + bad,
                },
            }
        }
        let text = String::from_utf8_lossy(&self.pending[..valid]).into_owned();
        self.pending.drain(..valid);
        text
    }

    /// Whatever is left at the end of the stream (an incomplete character becomes U+FFFD).
    pub fn finish(&mut self) -> String {
        let text = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn characters_split_across_tokens_come_out_whole() {
        let mut d = StreamDecoder::default();
        let bytes = "a€b".as_bytes(); // € is 3 bytes
        assert_eq!(d.push(&bytes[..2]), "a");
        assert_eq!(d.push(&bytes[2..3]), "");
        assert_eq!(d.push(&bytes[3..]), "€b");
        assert_eq!(d.push(&[0xff, b'x']), "\u{fffd}x");
        assert_eq!(d.push(&[0xe2]), "");
        assert_eq!(d.finish(), "\u{fffd}");
    }
}
