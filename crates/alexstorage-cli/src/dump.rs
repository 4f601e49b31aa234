//! The dump format (`docs/DUMP.md`): every family's entries as text lines, written by
//! `alexstorage dump` and read by `alexstorage load`, which round-trip every key and
//! every value byte for byte.
//!
//! ```text
//! alexstorage-dump 1
//! family default
//! -5<TAB>minus five
//! 7<TAB>bin\x00ary
//! family users
//! 1<TAB>ada
//! ```

use std::io::{BufRead, Write};

use alexstorage::{Db, WriteBatch};
use indicatif::ProgressBar;

use super::{escape, Failure};

/// The first line of a dump.
const HEADER: &str = "alexstorage-dump 1";
/// Writes per batch while loading.
const BATCH: usize = 1000;

/// Writes `db`'s every family, the default one first, to `out`; returns the entries.
pub fn write(db: &Db, out: &mut impl Write, progress: &ProgressBar) -> Result<u64, Failure> {
    writeln!(out, "{HEADER}")?;
    let mut entries = 0;
    let names = std::iter::once("default".to_owned()).chain(db.column_families());
    for name in names {
        writeln!(out, "family {}", escape(name.as_bytes()))?;
        for entry in db.column_family(&name)?.iter() {
            let (key, value) = entry?;
            writeln!(out, "{key}\t{}", escape(&value))?;
            entries += 1;
            progress.inc(1);
        }
    }
    Ok(entries)
}

/// Loads the dump `input` into `db` (its families created as they come), in batches;
/// returns the entries. A line that is not of the format fails with its number.
pub fn read(db: &Db, input: impl BufRead, progress: &ProgressBar) -> Result<u64, Failure> {
    let mut lines = input.split(b'\n');
    let first = lines.next().transpose()?.unwrap_or_default();
    if first != HEADER.as_bytes() {
        return Err(format!("line 1: not an alexstorage dump (expected {HEADER:?})").into());
    }
    let mut family = None;
    let mut batch = WriteBatch::new();
    let mut entries = 0;
    for (index, line) in lines.enumerate() {
        let number = index + 2;
        let line = line?;
        let bad = |what: &str| -> Failure { format!("line {number}: {what}").into() };
        if let Some(name) = line.strip_prefix(b"family ") {
            let name = String::from_utf8(unescape(name).ok_or_else(|| bad("bad escape in the family name"))?)
                .map_err(|_| bad("the family name is not UTF-8"))?;
            family = Some(db.column_family(&name)?);
            continue;
        }
        let Some(at) = line.iter().position(|&byte| byte == b'\t') else {
            return Err(bad("neither a family line nor KEY, a tab, VALUE"));
        };
        let (key, value) = (&line[..at], &line[at + 1..]);
        let key: i64 = std::str::from_utf8(key).ok().and_then(|key| key.parse().ok()).ok_or_else(|| bad("bad key"))?;
        let value = unescape(value).ok_or_else(|| bad("bad escape in the value"))?;
        let family = family.as_ref().ok_or_else(|| bad("an entry before any family line"))?;
        batch.put_cf(family, key, value);
        entries += 1;
        progress.inc(1);
        if batch.len() >= BATCH {
            db.write(std::mem::take(&mut batch))?;
        }
    }
    db.write(batch)?;
    Ok(entries)
}

/// Reverses [`escape`]: `\xNN` is the byte NN; every other byte stands for itself
/// (but a backslash must start an escape). `None` for a bad escape.
fn unescape(text: &[u8]) -> Option<Vec<u8>> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text;
    while let Some((&byte, after)) = rest.split_first() {
        if byte != b'\\' {
            bytes.push(byte);
            rest = after;
            continue;
        }
        let (escape, after) = after.split_at_checked(3)?;
        let [b'x', high, low] = *escape else { return None };
        let hex = std::str::from_utf8(&[high, low]).ok().and_then(|hex| u8::from_str_radix(hex, 16).ok())?;
        bytes.push(hex);
        rest = after;
    }
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescape_reverses_escape_for_every_byte() {
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(unescape(escape(&all).as_bytes()), Some(all));
        for bad in [&b"\\"[..], b"\\x", b"\\x4", b"\\xzz", b"\\y41", b"a\\"] {
            assert_eq!(unescape(bad), None, "{bad:?}");
        }
    }
}
