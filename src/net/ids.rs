//! Request ids: 128 random bits as 32 hex digits. The bits come from the system's
//! cryptographic generator a block at a time (a block serves 64 ids), so a request does not
//! pay for a generator call of its own.

use std::cell::RefCell;

/// Bytes fetched per refill: 64 ids.
const BLOCK: usize = 1024;

struct Pool {
    bytes: [u8; BLOCK],
    used: usize,
}

thread_local! {
    static POOL: RefCell<Pool> = const { RefCell::new(Pool { bytes: [0; BLOCK], used: BLOCK }) };
}

/// 16 random bytes from this thread's block, refilled when spent; `None` when the generator fails.
fn random16() -> Option<[u8; 16]> {
    POOL.with(|p| {
        let mut p = p.borrow_mut();
        if p.used + 16 > BLOCK {
            aws_lc_rs::rand::fill(&mut p.bytes).ok()?;
            p.used = 0;
        }
        let mut out = [0u8; 16];
        let at = p.used;
        out.copy_from_slice(&p.bytes[at..at + 16]);
        p.bytes[at..at + 16].fill(0); // an id's bits are handed out once
        p.used += 16;
        Some(out)
    })
}

/// A fresh random request id (32 hex digits), in the format request ids always had:
/// when the generator fails, the clock's nanoseconds stand in.
pub fn request_id() -> String {
    let bytes = random16().unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
            .to_le_bytes()
    });
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut id = String::with_capacity(32);
    for b in bytes {
        id.push(char::from(HEX[usize::from(b >> 4)]));
        id.push(char::from(HEX[usize::from(b & 15)]));
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_32_hex_digits_and_do_not_repeat() {
        let mut seen = std::collections::HashSet::new();
        // Several blocks, so refills are crossed.
        for _ in 0..(3 * BLOCK / 16 + 5) {
            let id = request_id();
            assert_eq!(id.len(), 32);
            assert!(
                id.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
                "{id}"
            );
            assert!(seen.insert(id), "an id repeated");
        }
    }
}
