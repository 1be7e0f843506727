//! A cursor over event bytes: every read checks the length first and fails
//! with [`Short`] instead of panicking, so no length or count read from a
//! corrupt event can make the decoder read past its bytes or allocate more
//! than the event holds.

/// An event ended before a field it announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Short;

/// Reads little- and big-endian fields from a byte slice.
#[derive(Debug, Clone, Copy)]
pub struct Cursor<'a> {
    buf: &'a [u8],
}

impl<'a> Cursor<'a> {
    pub fn new(buf: &'a [u8]) -> Cursor<'a> {
        Cursor { buf }
    }

    /// What is left.
    pub fn rest(&self) -> &'a [u8] {
        self.buf
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The next `n` bytes.
    #[inline]
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], Short> {
        if n > self.buf.len() {
            return Err(Short);
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    #[inline]
    pub fn u8(&mut self) -> Result<u8, Short> {
        let (&b, tail) = self.buf.split_first().ok_or(Short)?;
        self.buf = tail;
        Ok(b)
    }

    /// An unsigned little-endian integer of `n` ≤ 8 bytes.
    #[inline]
    pub fn le(&mut self, n: usize) -> Result<u64, Short> {
        let b = self.take(n)?;
        Ok(b.iter()
            .rev()
            .fold(0u64, |acc, &x| (acc << 8) | u64::from(x)))
    }

    /// An unsigned big-endian integer of `n` ≤ 8 bytes.
    #[inline]
    pub fn be(&mut self, n: usize) -> Result<u64, Short> {
        let b = self.take(n)?;
        Ok(b.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x)))
    }

    /// A signed big-endian integer of `n` ≤ 8 bytes.
    #[inline]
    pub fn be_signed(&mut self, n: usize) -> Result<i64, Short> {
        let v = self.be(n)?;
        let shift = 64 - 8 * n as u32;
        Ok(((v << shift) as i64) >> shift)
    }

    /// A length-encoded integer (protocol `int<lenenc>`).
    pub fn lenenc(&mut self) -> Result<u64, Short> {
        match self.u8()? {
            n @ 0..=250 => Ok(u64::from(n)),
            0xFC => self.le(2),
            0xFD => self.le(3),
            0xFE => self.le(8),
            // 0xFB (NULL) and 0xFF (error) are not lengths
            _ => Err(Short),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_check_the_length_first() {
        let mut c = Cursor::new(&[1, 2, 3, 0xFC, 0x10, 0x01]);
        assert_eq!(c.le(2), Ok(0x0201));
        assert_eq!(c.take(5), Err(Short));
        assert_eq!(c.u8(), Ok(3));
        assert_eq!(c.lenenc(), Ok(0x0110));
        assert!(c.is_empty());
        assert_eq!(c.u8(), Err(Short));
        assert_eq!(Cursor::new(&[0xFF, 0xFE]).be_signed(2), Ok(-2));
        assert_eq!(Cursor::new(&[0x7F]).be_signed(1), Ok(127));
    }
}
