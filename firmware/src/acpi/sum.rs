//! Byte sums, as ACPI, SMBIOS and MP table checksums need them.

/// The 8-bit sum of `bytes`, eight bytes per step ([`lanes`]), the last word
/// overlapping the one before it with the bytes already counted masked off:
/// one loop without a tail loop, as under TCG the cost of a checksum is
/// translating its code, which runs once, not the iterations.
pub fn byte_sum(bytes: &[u8]) -> u8 {
    let len = bytes.len();
    if len < 8 {
        return bytes.iter().fold(0u8, |s, &b| s.wrapping_add(b));
    }
    let mut total = 0;
    for k in 0..len.div_ceil(8) {
        crate::mem::block_boundary();
        let at = usize::min(8 * k, len - 8);
        let w = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
        // The bytes before 8 * k were counted with the word before.
        total += lanes(w & (u64::MAX << (8 * (8 * k - at))));
    }
    total as u8
}

/// The 8-bit sum of 16 bytes, without a loop.
pub fn sum16(bytes: &[u8; 16]) -> u8 {
    let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
    (lanes(word(0)) + lanes(word(8))) as u8
}

/// The sum of the eight bytes of `w`: its even and odd bytes are added into
/// four 16-bit lanes, which one multiplication folds into the top lane.
pub fn lanes(w: u64) -> u64 {
    const LANES: u64 = 0x00FF_00FF_00FF_00FF;
    let pairs = (w & LANES) + ((w >> 8) & LANES);
    pairs.wrapping_mul(0x0001_0001_0001_0001) >> 48
}
