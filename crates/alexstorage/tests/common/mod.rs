//! Helpers shared by the integration tests (each test binary uses some of them).

#![allow(dead_code)]

/// Cases per property test: `PROPTEST_CASES` when set (for long runs), else `default`.
pub fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|cases| cases.parse().ok()).unwrap_or(default)
}

/// CRC-32C (Castagnoli), bitwise: the tests' own implementation, independent of the
/// crate's, so that a test that forges a checksum does not trust the code under test.
pub fn crc32c(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0x82F6_3B78 } else { crc >> 1 };
        }
    }
    !crc
}
