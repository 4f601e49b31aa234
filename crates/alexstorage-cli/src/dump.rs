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
//! end 3
//! ```

use std::io::{BufRead, Write};

use alexstorage::{Db, WriteBatch};
use indicatif::ProgressBar;

use super::{escape, Failure};

/// The first line of a dump.
const HEADER: &str = "alexstorage-dump 1";
/// Writes per batch while loading...
const BATCH: usize = 1000;
/// ...and bytes of values: a batch is one write, which must fit a segment.
const BATCH_BYTES: usize = 16 << 20;

/// Writes `db`'s every family, the default one first, to `out`, then the trailer;
/// returns the entries. A family dropped while the dump runs is left out.
pub fn write(db: &Db, out: &mut impl Write, progress: &ProgressBar) -> Result<u64, Failure> {
    writeln!(out, "{HEADER}")?;
    let mut entries = 0;
    let names = std::iter::once("default".to_owned()).chain(db.column_families());
    for name in names {
        let family = match db.column_family(&name) {
            Ok(family) => family,
            Err(alexstorage::Error::ColumnFamilyNotFound(_)) => continue,
            Err(error) => return Err(error.into()),
        };
        writeln!(out, "family {}", escape(name.as_bytes()))?;
        for entry in family.iter() {
            let (key, value) = entry?;
            writeln!(out, "{key}\t{}", escape(&value))?;
            entries += 1;
            progress.inc(1);
        }
    }
    writeln!(out, "end {entries}")?;
    Ok(entries)
}

/// Reads and checks the header line of a dump; call before [`read`] (and before
/// opening the store, so that input that is no dump leaves nothing behind).
pub fn read_header(input: &mut impl BufRead) -> Result<(), Failure> {
    let mut first = Vec::new();
    input.read_until(b'\n', &mut first)?;
    if first != format!("{HEADER}\n").as_bytes() {
        let hint = if first.ends_with(b"\r\n") { " (its lines end in CR LF: a dump's end in LF)" } else { "" };
        return Err(format!("line 1: not an alexstorage dump (expected {HEADER:?}){hint}").into());
    }
    Ok(())
}

/// Loads the rest of the dump `input` (after [`read_header`]) into `db`, its families
/// created as they come, in batches (of [`BATCH`] entries or [`BATCH_BYTES`] of
/// values, whichever comes first); returns the entries. The first line that is not of
/// the format fails with its number; so does a dump that ends without its trailer
/// (cut short) or whose trailer counts other entries. Batches written before a
/// failure stay written.
pub fn read(db: &Db, mut input: impl BufRead, progress: &ProgressBar) -> Result<u64, Failure> {
    let mut family = None;
    let mut batch = WriteBatch::new();
    let mut batch_bytes = 0usize;
    let mut entries = 0u64;
    let mut ended = false;
    let mut line = Vec::new();
    for number in 2usize.. {
        line.clear();
        if input.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        let bad = |what: &str| -> Failure { format!("line {number}: {what}").into() };
        if ended {
            return Err(bad("text after the trailer"));
        }
        if line.pop() != Some(b'\n') {
            return Err(bad("the dump is cut short (its last line has no line feed)"));
        }
        // A dump's lines hold printable ASCII and one tab; anything else (a CR of CR
        // LF line ends, say) would load as part of a name or value.
        if let Some(&byte) = line.iter().find(|&&byte| !(0x20..0x7f).contains(&byte) && byte != b'\t') {
            return Err(bad(&format!("byte {byte:#04x} is not in the format (line ends must be LF only)")));
        }
        if let Some(count) = line.strip_prefix(b"end ") {
            if std::str::from_utf8(count).ok() != Some(entries.to_string().as_str()) {
                return Err(bad(&format!("the trailer does not count the {entries} entries read")));
            }
            ended = true;
            continue;
        }
        if let Some(name) = line.strip_prefix(b"family ") {
            let name = String::from_utf8(unescape(name).ok_or_else(|| bad("bad escape in the family name"))?)
                .map_err(|_| bad("the family name is not UTF-8"))?;
            family = Some(db.column_family(&name).map_err(|error| bad(&error.to_string()))?);
            continue;
        }
        let Some(at) = line.iter().position(|&byte| byte == b'\t') else {
            return Err(bad("neither a family line nor KEY, a tab, VALUE"));
        };
        let (key, value) = (&line[..at], &line[at + 1..]);
        // Exactly as a dump writes keys: no `+`, no leading zeros.
        let key: i64 = std::str::from_utf8(key)
            .ok()
            .and_then(|text| text.parse::<i64>().ok().filter(|key| key.to_string() == text))
            .ok_or_else(|| bad("bad key"))?;
        let value = unescape(value).ok_or_else(|| bad("bad escape in the value"))?;
        let family = family.as_ref().ok_or_else(|| bad("an entry before any family line"))?;
        batch_bytes += value.len();
        batch.put_cf(family, key, value);
        entries += 1;
        progress.inc(1);
        if batch.len() >= BATCH || batch_bytes >= BATCH_BYTES {
            db.write(std::mem::take(&mut batch)).map_err(|error| bad(&error.to_string()))?;
            batch_bytes = 0;
        }
    }
    if !ended {
        return Err("the dump is cut short: it ends without its trailer line (end N)".into());
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
        if !high.is_ascii_hexdigit() || !low.is_ascii_hexdigit() {
            return None;
        }
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
        for bad in [&b"\\"[..], b"\\x", b"\\x4", b"\\xzz", b"\\y41", b"a\\", b"\\x+f", b"\\x-1"] {
            assert_eq!(unescape(bad), None, "{bad:?}");
        }
    }
}
