//! [`preentry_pe::VaReader`] over any address-space source, so the PE/TLS reader can follow a
//! callback array or TLS directory that lies outside the image (in private RWX memory, say).

use crate::{MemoryReader, ProcessMemory};

/// Wraps any [`MemoryReader`] as a [`preentry_pe::VaReader`]: `read_va` returns the number of
/// leading bytes that were readable (0 on a source error or when the first byte is unreadable).
#[derive(Clone, Copy)]
pub struct AsVaReader<'a, R: MemoryReader + ?Sized>(pub &'a R);

fn leading<R: MemoryReader + ?Sized>(r: &R, va: u64, buf: &mut [u8]) -> usize {
    match r.read(va, buf) {
        Ok(res) => match res.valid.first() {
            Some(v) if v.start == va => {
                usize::try_from(v.end - v.start).map_or(buf.len(), |n| n.min(buf.len()))
            }
            _ => 0,
        },
        Err(_) => 0,
    }
}

impl<R: MemoryReader + ?Sized> preentry_pe::VaReader for AsVaReader<'_, R> {
    fn read_va(&self, va: u64, buf: &mut [u8]) -> usize {
        leading(self.0, va, buf)
    }
}

impl preentry_pe::VaReader for dyn ProcessMemory + '_ {
    fn read_va(&self, va: u64, buf: &mut [u8]) -> usize {
        leading(self, va, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peb::tests::Sparse;
    use preentry_pe::VaReader;

    #[test]
    fn leading_bytes_only() {
        let mut m = Sparse::default();
        m.write(0x1000, &[1u8; 0x1000]);
        let a = AsVaReader(&m);
        let mut buf = [0u8; 0x20];
        assert_eq!(a.read_va(0x1ff0, &mut buf), 0x10);
        assert_eq!(&buf[..0x10], &[1u8; 0x10]);
        assert_eq!(a.read_va(0x1000, &mut buf), 0x20);
        // first byte unreadable: nothing, even if later bytes are readable
        assert_eq!(a.read_va(0xff0, &mut buf), 0);
        assert_eq!(a.read_va(u64::MAX - 4, &mut buf), 0);
    }
}
