//! How an RPC input is laid out: a few leading choice bytes, then the encoded message.
//!
//! Byte 0 picks the request type; each later choice byte picks, for one id field, either a real
//! id of the scratch coordinator (high bit clear: `real[byte % len]`) or the id the message itself
//! carries (high bit set, or no real ids yet). The rest is given to `prost::Message::decode`.

/// The bytes of an input, consumed from the front.
pub struct Picks<'a> {
    rest: &'a [u8],
}

impl<'a> Picks<'a> {
    /// Reads `data` from its first byte.
    pub fn new(data: &'a [u8]) -> Self {
        Self { rest: data }
    }

    /// The next byte, 0 when the input is used up.
    pub fn byte(&mut self) -> u8 {
        match self.rest.split_first() {
            Some((first, rest)) => {
                self.rest = rest;
                *first
            }
            None => 0,
        }
    }

    /// The request type: `byte % count`.
    pub fn index(&mut self, count: usize) -> usize {
        usize::from(self.byte()) % count.max(1)
    }

    /// A choice byte for an id (see the module docs).
    pub fn id_choice(&mut self) -> IdChoice {
        IdChoice(self.byte())
    }

    /// What remains: the encoded message.
    pub fn message(&self) -> &'a [u8] {
        self.rest
    }
}

/// One choice byte for an id field.
#[derive(Clone, Copy, Debug)]
pub struct IdChoice(pub u8);

impl IdChoice {
    /// The real id this choice picks, or `None` to keep the fuzzed one.
    pub fn pick(self, real: &[String]) -> Option<&String> {
        if self.0 & 0x80 != 0 || real.is_empty() {
            return None;
        }
        real.get(usize::from(self.0) % real.len())
    }

    /// `raw` replaced by the real id this choice picks, if any.
    pub fn apply(self, raw: &mut String, real: &[String]) {
        if let Some(id) = self.pick(real) {
            raw.clone_from(id);
        }
    }

    /// The choice for the `offset`-th id of a list.
    pub fn nth(self, offset: usize) -> IdChoice {
        let step = u8::try_from(offset % 128).expect("below 128");
        IdChoice((self.0 & 0x80) | (self.0.wrapping_add(step) & 0x7f))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_come_first_then_the_message() {
        let mut picks = Picks::new(&[7, 0x81, 1, 2, 3]);
        assert_eq!(picks.index(6), 1);
        let choice = picks.id_choice();
        assert_eq!(picks.message(), &[1, 2, 3]);
        let real = vec!["a".to_string(), "b".to_string()];
        assert_eq!(choice.pick(&real), None);
        assert_eq!(IdChoice(3).pick(&real), Some(&real[1]));
        assert_eq!(IdChoice(3).pick(&[]), None);
        assert_eq!(IdChoice(3).nth(1).pick(&real), Some(&real[0]));
        assert_eq!(Picks::new(&[]).byte(), 0);
    }
}
