//! [`ByteSource`]: turns fuzzer bytes into structured choices.

/// Reads choices from fuzzer bytes, front to back. Once the bytes run out every read returns
/// zero / false / empty, so any input (including an empty one) describes a complete case and
/// small mutations of the bytes make small changes to the case.
pub struct ByteSource<'a> {
    data: &'a [u8],
}

impl<'a> ByteSource<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        ByteSource { data }
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    pub fn bool(&mut self) -> bool {
        self.byte() & 1 == 1
    }

    /// A value in `0..n` (`n > 0`); one byte when `n <= 256`, else two.
    pub fn below(&mut self, n: usize) -> usize {
        debug_assert!(n > 0);
        if n <= 256 {
            usize::from(self.byte()) % n
        } else {
            usize::from(u16::from_le_bytes([self.byte(), self.byte()])) % n
        }
    }

    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.byte(), self.byte(), self.byte(), self.byte()])
    }

    /// Up to `max` raw bytes.
    pub fn take(&mut self, max: usize) -> &'a [u8] {
        let n = max.min(self.data.len());
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        head
    }

    /// One element of `items` (`items` non-empty).
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_in_order_then_zeroes() {
        let mut src = ByteSource::new(&[3, 1, 2, 0xff]);
        assert_eq!(src.below(2), 1);
        assert!(src.bool());
        assert_eq!(src.take(1), &[2]);
        assert_eq!(src.pick(&['a', 'b', 'c']), 'a'); // 0xff % 3 == 0
        assert!(src.is_empty());
        assert_eq!((src.byte(), src.u32(), src.take(4).len()), (0, 0, 0));
    }
}
