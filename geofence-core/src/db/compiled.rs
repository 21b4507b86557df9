//! geofence's own database file: a compiled [`RangeTable`] that loads with one read and a
//! validation pass, no text parsing.
//!
//! Layout (integers little-endian):
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 8 | magic `\x89GFDB\r\n\x1a` (a text-mode transfer or a truncation shows) |
//! | 8 | 2 | format version (1) |
//! | 10 | 2 | value kind (1: country code, 2: AS number) |
//! | 12 | 4 | CRC-32 of every byte from offset 16 on |
//! | 16 | 2 + n | data date, UTF-8, length-prefixed |
//! | … | 2 + n | source, UTF-8, length-prefixed |
//! | … | 4 + w·n | value count, then each value (a country code: 2 ASCII letters; an AS number: 4 bytes, not 0) |
//! | … | … | AS numbers only: each value's organisation, UTF-8, length-prefixed (empty: none) |
//! | … | 4 + … | IPv4 entry count, then the entries |
//! | … | 4 + … | IPv6 entry count, then the entries |
//!
//! Entry `i` maps `start[i]..start[i+1]` to `values[slot[i]]`, or to nothing. The first entry
//! starts at 0 and stores only its slot; every later one stores the step from the previous
//! start as a byte `z` and an unsigned LEB128 `m` (step = `m << z`: IPv6 steps are large powers
//! of two, so this takes 2–4 bytes where a raw address takes 16), then its slot as LEB128
//! `slot + 1` (0: nothing). Loading checks the magic, version, kind and checksum, that every
//! count fits in what remains of the file (so nothing is allocated from a damaged count), that
//! every step is positive and stays within the family, that every slot names a value, and that
//! the encoding is canonical (merged entries, shortest numbers): bytes that load re-encode to
//! themselves.

use std::collections::HashMap;

use super::table::{Ipv4Builder, Ipv6Builder, RangeTable, Slot, TableValue, MAX_IPV4_ENTRIES, MAX_VALUES, NONE};
use crate::asn::{Asn, AsnTable};
use crate::CountryCode;

/// The first 8 bytes of every compiled file.
pub const MAGIC: [u8; 8] = *b"\x89GFDB\r\n\x1a";
const VERSION: u16 = 1;
const HEADER: usize = 16;

/// A kind of value a compiled file holds: its number in the header, its name in errors, and
/// its fixed-width encoding.
trait Kind: TableValue {
    const KIND: u16;
    const WIDTH: usize;
    fn put(self, out: &mut Vec<u8>);
    /// The value of `WIDTH` bytes, or `None` when they are not one.
    fn read(bytes: &[u8]) -> Option<Self>;
}

impl Kind for CountryCode {
    const KIND: u16 = 1;
    const WIDTH: usize = 2;
    fn put(self, out: &mut Vec<u8>) {
        out.extend(self.as_str().as_bytes());
    }
    fn read(bytes: &[u8]) -> Option<CountryCode> {
        CountryCode::from_bytes([bytes[0], bytes[1]])
    }
}

impl Kind for Asn {
    const KIND: u16 = 2;
    const WIDTH: usize = 4;
    fn put(self, out: &mut Vec<u8>) {
        out.extend(self.0.to_le_bytes());
    }
    fn read(bytes: &[u8]) -> Option<Asn> {
        let number = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        (number != 0).then_some(Asn(number))
    }
}

/// The name of a value kind, for errors.
fn kind_name(kind: u16) -> &'static str {
    match kind {
        1 => "country codes",
        2 => "AS numbers",
        _ => "an unknown kind",
    }
}

/// What a compiled file says about itself.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Provenance {
    /// When the source data was published, as its publisher dates it (e.g. `2026-06`).
    pub date: String,
    /// Where the data comes from, with the attribution its licence asks for.
    pub source: String,
}

/// Why bytes are not a compiled country database.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CompiledError {
    /// The file does not start with the magic bytes.
    #[error("not a geofence database (no magic bytes)")]
    NotCompiled,
    /// The file is of a format version this geofence does not read.
    #[error("format version {0} is not supported (this geofence reads version {VERSION})")]
    Version(u16),
    /// The file holds values of another kind than the one asked for.
    #[error("the file holds {} (value kind {found}), not {}", kind_name(*found), kind_name(*expected))]
    Kind {
        /// The kind the file holds.
        found: u16,
        /// The kind that was asked for.
        expected: u16,
    },
    /// The checksum does not match: the file is damaged.
    #[error("checksum mismatch (stored {stored:#010x}, computed {computed:#010x}): the file is damaged")]
    Checksum {
        /// The checksum in the header.
        stored: u32,
        /// The checksum of the bytes.
        computed: u32,
    },
    /// A field is cut off or wrong.
    #[error("at byte {offset}: {problem}")]
    At {
        /// Where in the file.
        offset: usize,
        /// What is wrong.
        problem: &'static str,
    },
}

/// Writes a country table and its provenance as a compiled file.
pub fn encode(table: &RangeTable<CountryCode>, provenance: &Provenance) -> Vec<u8> {
    encode_kind(table, provenance, |_| {})
}

/// Writes an ASN table, with its organisation names, and its provenance as a compiled file.
pub fn encode_asn(table: &AsnTable, provenance: &Provenance) -> Vec<u8> {
    encode_kind(&table.table, provenance, |body| {
        for asn in table.asns() {
            put_text(body, table.organisation(*asn).unwrap_or_default());
        }
    })
}

/// The file of `table`, with `after_values` writing what its kind keeps beside the values.
fn encode_kind<V: Kind>(
    table: &RangeTable<V>,
    provenance: &Provenance,
    after_values: impl FnOnce(&mut Vec<u8>),
) -> Vec<u8> {
    let mut body = Vec::new();
    put_text(&mut body, &provenance.date);
    put_text(&mut body, &provenance.source);
    body.extend((table.values.len() as u32).to_le_bytes());
    for value in &table.values {
        value.put(&mut body);
    }
    after_values(&mut body);
    put_entries(&mut body, &table.v4.entries());
    put_entries(&mut body, &table.v6.entries());
    let mut file = Vec::with_capacity(HEADER + body.len());
    file.extend(MAGIC);
    file.extend(VERSION.to_le_bytes());
    file.extend(V::KIND.to_le_bytes());
    file.extend(crc32fast::hash(&body).to_le_bytes());
    file.extend(body);
    file
}

fn put_entries(out: &mut Vec<u8>, entries: &[(u128, Slot)]) {
    out.extend((entries.len() as u32).to_le_bytes());
    let mut previous = 0u128;
    for (index, &(start, slot)) in entries.iter().enumerate() {
        if index > 0 {
            let step = start - previous;
            let zeros = step.trailing_zeros();
            out.push(zeros as u8);
            put_leb128(out, step >> zeros);
        }
        previous = start;
        put_leb128(out, if slot == NONE { 0 } else { u128::from(slot) + 1 });
    }
}

fn put_leb128(out: &mut Vec<u8>, mut value: u128) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// A text field: its length in a u16, then its bytes. A longer text is cut at the last
/// character boundary that fits, so the field stays UTF-8 and the file stays readable.
fn put_text(out: &mut Vec<u8>, text: &str) {
    let mut end = text.len().min(usize::from(u16::MAX));
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    out.extend((end as u16).to_le_bytes());
    out.extend(&text.as_bytes()[..end]);
}

/// Reads a compiled country file, refusing anything damaged or foreign.
pub fn decode(file: &[u8]) -> Result<(RangeTable<CountryCode>, Provenance), CompiledError> {
    decode_kind(file, |_, _| Ok(()))
}

/// Whether the bytes are a compiled file of the ASN kind, by its header alone.
pub fn holds_asns(file: &[u8]) -> bool {
    file.starts_with(&MAGIC) && file.get(10..12) == Some(&Asn::KIND.to_le_bytes()[..])
}

/// Reads a compiled ASN file, with its organisation names, refusing anything damaged or
/// foreign.
pub fn decode_asn(file: &[u8]) -> Result<(AsnTable, Provenance), CompiledError> {
    let mut names = HashMap::new();
    let (table, provenance) = decode_kind(file, |reader, values: &[Asn]| {
        for asn in values {
            let name = reader.text(&ORGANISATION)?;
            if !name.is_empty() {
                names.insert(*asn, name.into_boxed_str());
            }
        }
        Ok(())
    })?;
    Ok((AsnTable::new(table, names), provenance))
}

/// Reads a file of kind `V`; `after_values` reads what the kind keeps beside the values.
fn decode_kind<V: Kind>(
    file: &[u8],
    after_values: impl FnOnce(&mut Reader, &[V]) -> Result<(), CompiledError>,
) -> Result<(RangeTable<V>, Provenance), CompiledError> {
    if file.get(..MAGIC.len()) != Some(&MAGIC[..]) {
        return Err(CompiledError::NotCompiled);
    }
    let mut reader = Reader { file, offset: MAGIC.len() };
    let version = reader.u16()?;
    if version != VERSION {
        return Err(CompiledError::Version(version));
    }
    let kind = reader.u16()?;
    if kind != V::KIND {
        return Err(CompiledError::Kind { found: kind, expected: V::KIND });
    }
    let stored = reader.u32()?;
    let computed = crc32fast::hash(&file[HEADER..]);
    if stored != computed {
        return Err(CompiledError::Checksum { stored, computed });
    }
    let provenance = Provenance { date: reader.text(&PROVENANCE)?, source: reader.text(&PROVENANCE)? };
    let values = reader.values::<V>()?;
    after_values(&mut reader, &values)?;
    // Each family is built as its entries are read: no list of them is held on the way.
    let v4_entries = reader.count(1, "file cut short before a table")?;
    if v4_entries > MAX_IPV4_ENTRIES {
        return Err(reader.problem("more IPv4 entries than a table holds"));
    }
    let mut v4 = Ipv4Builder::with_capacity(v4_entries);
    reader.entries(v4_entries, values.len(), u64::from(u32::MAX), |start, slot| v4.push(start as u32, slot))?;
    let v6_entries = reader.count(1, "file cut short before a table")?;
    let mut v6 = Ipv6Builder::with_capacity(v6_entries);
    reader.entries(v6_entries, values.len(), u128::MAX, |start, slot| v6.push(start, slot))?;
    if reader.offset != file.len() {
        return Err(reader.problem("bytes after the IPv6 table"));
    }
    Ok((RangeTable::from_parts(values, v4.finish(), v6.finish()), provenance))
}

/// What goes wrong with a text field, as its errors say it.
struct TextField {
    cut: &'static str,
    past_the_end: &'static str,
    not_utf8: &'static str,
}

const PROVENANCE: TextField = TextField {
    cut: "file cut short in the provenance",
    past_the_end: "provenance text runs past the end",
    not_utf8: "provenance text is not UTF-8",
};

const ORGANISATION: TextField = TextField {
    cut: "file cut short in an organisation",
    past_the_end: "organisation runs past the end",
    not_utf8: "organisation is not UTF-8",
};

/// A cursor that fails with the offset, never reads out of bounds.
struct Reader<'a> {
    file: &'a [u8],
    offset: usize,
}

impl Reader<'_> {
    fn problem(&self, problem: &'static str) -> CompiledError {
        CompiledError::At { offset: self.offset, problem }
    }

    fn take(&mut self, length: usize, what: &'static str) -> Result<&[u8], CompiledError> {
        let end =
            self.offset.checked_add(length).filter(|end| *end <= self.file.len()).ok_or_else(|| self.problem(what))?;
        let bytes = &self.file[self.offset..end];
        self.offset = end;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], CompiledError> {
        let bytes = self.take(N, what)?;
        Ok(std::array::from_fn(|i| bytes[i]))
    }

    fn u16(&mut self) -> Result<u16, CompiledError> {
        Ok(u16::from_le_bytes(self.array("file cut short in the header")?))
    }

    fn u32(&mut self) -> Result<u32, CompiledError> {
        Ok(u32::from_le_bytes(self.array("file cut short in the header")?))
    }

    /// A length-prefixed UTF-8 text, with the field's own errors.
    fn text(&mut self, field: &TextField) -> Result<String, CompiledError> {
        let length = usize::from(u16::from_le_bytes(self.array(field.cut)?));
        let start = self.offset;
        let bytes = self.take(length, field.past_the_end)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| CompiledError::At { offset: start, problem: field.not_utf8 })
    }

    /// A count of `width`-byte items, checked against the bytes left before anything is allocated.
    fn count(&mut self, width: usize, what: &'static str) -> Result<usize, CompiledError> {
        let count = u32::from_le_bytes(self.array(what)?) as usize;
        let left = self.file.len() - self.offset;
        if count.checked_mul(width).is_none_or(|bytes| bytes > left) {
            return Err(self.problem("count larger than the rest of the file"));
        }
        Ok(count)
    }

    fn values<V: Kind>(&mut self) -> Result<Vec<V>, CompiledError> {
        let count = self.count(V::WIDTH, "file cut short before the values")?;
        if count > MAX_VALUES {
            return Err(self.problem("too many values"));
        }
        (0..count)
            .map(|_| {
                let at = self.offset;
                V::read(self.take(V::WIDTH, "value cut short")?)
                    .ok_or(CompiledError::At { offset: at, problem: "value is not of the file's kind" })
            })
            .collect()
    }

    fn byte(&mut self, what: &'static str) -> Result<u8, CompiledError> {
        Ok(self.array::<1>(what)?[0])
    }

    /// A LEB128 number. Nearly every number fits 63 bits in canonical form and takes the
    /// quick path; anything else (long, padded, cut short) is read by [`Reader::long_leb128`],
    /// which names the problem.
    #[inline]
    fn leb128(&mut self) -> Result<u128, CompiledError> {
        match short_leb128(&self.file[self.offset..]) {
            Some((value, length)) => {
                self.offset += length;
                Ok(u128::from(value))
            }
            None => self.long_leb128(),
        }
    }

    #[cold]
    fn long_leb128(&mut self) -> Result<u128, CompiledError> {
        let mut value = 0u128;
        let mut shift = 0;
        loop {
            let byte = self.byte("entry cut short")?;
            let bits = u128::from(byte & 0x7f);
            if shift >= 128 || (bits << shift) >> shift != bits {
                return Err(self.problem("number too large"));
            }
            value |= bits << shift;
            if byte & 0x80 == 0 {
                // One number, one encoding: a padded form would load the same table from
                // different bytes.
                if byte == 0 && shift > 0 {
                    return Err(self.problem("number encoded in more bytes than it needs"));
                }
                return Ok(value);
            }
            shift += 7;
        }
    }

    /// One family's `count` entries, each handed to `push` as (start, slot) once checked:
    /// starts rise from 0 and stay within `max`, slots name one of `values` (or none), and
    /// neighbours differ in slot. The count was checked against the bytes left (each entry
    /// takes at least one).
    fn entries<S: Start>(
        &mut self,
        count: usize,
        values: usize,
        max: S,
        mut push: impl FnMut(S, Slot),
    ) -> Result<(), CompiledError> {
        if count == 0 {
            return Err(self.problem("a table has no entries"));
        }
        let mut start = S::ZERO;
        let mut previous = None;
        for index in 0..count {
            let at = self.offset;
            if index > 0 {
                let zeros = u32::from(self.byte("entry cut short")?);
                let multiple = self.leb128()?;
                // Shifted left by `zeros`, the multiple must keep every bit and not be zero.
                let step = S::step(multiple, zeros)
                    .ok_or(CompiledError::At { offset: at, problem: "range step is zero or too large" })?;
                start = start
                    .checked_add(step)
                    .filter(|next| *next <= max)
                    .ok_or(CompiledError::At { offset: at, problem: "range start beyond the address family" })?;
            }
            let slot = match self.leb128()? {
                0 => NONE,
                n if n <= values as u128 => (n - 1) as Slot,
                _ => return Err(CompiledError::At { offset: at, problem: "entry names a value that does not exist" }),
            };
            if previous == Some(slot) {
                return Err(CompiledError::At { offset: at, problem: "adjacent entries of one value are not merged" });
            }
            previous = Some(slot);
            push(start, slot);
        }
        Ok(())
    }
}

/// The integer a family's range starts are summed in: u64 for IPv4 (whose starts fit 32 bits,
/// so the sums never need 128-bit arithmetic), u128 for IPv6.
trait Start: Copy + Ord {
    const ZERO: Self;
    /// `multiple << zeros`, if the multiple is not zero and no bit is shifted out.
    fn step(multiple: u128, zeros: u32) -> Option<Self>;
    fn checked_add(self, step: Self) -> Option<Self>;
}

impl Start for u64 {
    const ZERO: u64 = 0;
    fn step(multiple: u128, zeros: u32) -> Option<u64> {
        let multiple = u64::try_from(multiple).ok().filter(|m| *m != 0 && m.leading_zeros() >= zeros)?;
        Some(multiple << zeros)
    }
    fn checked_add(self, step: u64) -> Option<u64> {
        u64::checked_add(self, step)
    }
}

impl Start for u128 {
    const ZERO: u128 = 0;
    fn step(multiple: u128, zeros: u32) -> Option<u128> {
        (multiple != 0 && multiple.leading_zeros() >= zeros).then(|| multiple << zeros)
    }
    fn checked_add(self, step: u128) -> Option<u128> {
        u128::checked_add(self, step)
    }
}

/// A canonical LEB128 number of at most nine bytes (63 bits) at the start of `bytes`, and its
/// length; `None` for anything longer, padded or cut short.
fn short_leb128(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (index, &byte) in bytes.iter().take(9).enumerate() {
        value |= u64::from(byte & 0x7f) << (7 * index);
        if byte & 0x80 == 0 {
            return (byte != 0 || index == 0).then_some((value, index + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::TableBuilder;
    use std::net::IpAddr;

    fn sample() -> (RangeTable<CountryCode>, Provenance) {
        let mut builder = TableBuilder::new();
        let gb: CountryCode = "GB".parse().unwrap();
        let cn: CountryCode = "CN".parse().unwrap();
        builder.insert(0, "192.0.2.0".parse().unwrap(), "192.0.2.255".parse().unwrap(), gb).unwrap();
        builder.insert(0, "198.51.100.0".parse().unwrap(), "198.51.100.255".parse().unwrap(), cn).unwrap();
        builder.insert(0, "2001:db8::".parse().unwrap(), "2001:db8::ffff".parse().unwrap(), cn).unwrap();
        (builder.build(), Provenance { date: "2026-06".into(), source: "test fixture".into() })
    }

    proptest::proptest! {
        #[test]
        fn the_quick_number_path_reads_as_the_long_one(bytes in proptest::collection::vec(proptest::prop_oneof![3 => 0x80u8.., 1 => proptest::prelude::any::<u8>()], 0..24)) {
            let mut quick = Reader { file: &bytes, offset: 0 };
            let mut long = Reader { file: &bytes, offset: 0 };
            let (q, l) = (quick.leb128(), long.long_leb128());
            proptest::prop_assert_eq!(q.map_err(|e| e.to_string()), l.map_err(|e| e.to_string()));
            proptest::prop_assert_eq!(quick.offset, long.offset);
        }
    }

    #[test]
    fn round_trips_table_and_provenance() {
        let (table, provenance) = sample();
        let (back, back_provenance) = decode(&encode(&table, &provenance)).unwrap();
        assert_eq!(back, table);
        assert_eq!(back_provenance, provenance);
    }

    #[test]
    fn overlong_provenance_is_cut_between_characters_and_still_loads() {
        let (table, _) = sample();
        // 65,535 bytes would end in the middle of the two-byte `é`.
        let source = format!("{}é and more", "x".repeat(usize::from(u16::MAX) - 1));
        let provenance = Provenance { date: "2026-06".into(), source };
        let (_, back) = decode(&encode(&table, &provenance)).unwrap();
        assert_eq!(back.source.len(), usize::from(u16::MAX) - 1);
        assert!(provenance.source.starts_with(&back.source));
    }

    #[test]
    fn every_truncation_is_refused() {
        let (table, provenance) = sample();
        let file = encode(&table, &provenance);
        for length in 0..file.len() {
            assert!(decode(&file[..length]).is_err(), "accepted a file cut to {length} bytes");
        }
    }

    #[test]
    fn every_single_bit_flip_is_refused() {
        let (table, provenance) = sample();
        let file = encode(&table, &provenance);
        for bit in 0..file.len() * 8 {
            let mut damaged = file.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(decode(&damaged).is_err(), "accepted a flip of bit {bit}");
        }
    }

    /// A larger file: 1,500 random ranges of both families, IPv6 ones splitting /64s too.
    fn larger() -> Vec<u8> {
        let mut builder = TableBuilder::new();
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let codes: Vec<CountryCode> = ["GB", "US", "CN", "DE", "NZ"].iter().map(|c| c.parse().unwrap()).collect();
        for _ in 0..1500 {
            let country = codes[(next() % 5) as usize];
            let (first, last) = if next() % 2 == 0 {
                let first = next() as u32;
                let last = first.saturating_add((next() % 4096) as u32);
                (IpAddr::V4(first.into()), IpAddr::V4(last.into()))
            } else {
                let first = (0x2400u128 << 112) | (u128::from(next()) << 40) | u128::from(next() % 3);
                let last = first + u128::from(next() % (1 << 20));
                (IpAddr::V6(first.into()), IpAddr::V6(last.into()))
            };
            builder.insert(0, first, last, country).unwrap();
        }
        encode(&builder.build(), &Provenance { date: "2026-11".into(), source: "random".into() })
    }

    #[test]
    fn a_larger_file_round_trips_and_refuses_truncations_and_bit_flips() {
        let file = larger();
        let (table, provenance) = decode(&file).unwrap();
        assert_eq!(encode(&table, &provenance), file);
        for length in (0..file.len()).step_by(7) {
            assert!(decode(&file[..length]).is_err(), "accepted a file cut to {length} bytes");
        }
        let mut state = 12345u64;
        for _ in 0..3000 {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let bit = (state >> 20) as usize % (file.len() * 8);
            let mut damaged = file.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(decode(&damaged).is_err(), "accepted a flip of bit {bit}");
        }
    }

    #[test]
    fn foreign_and_future_files_are_named_as_such() {
        assert_eq!(decode(b"1.0.0.0,1.0.0.255,AU\n"), Err(CompiledError::NotCompiled));
        let (table, provenance) = sample();
        let mut file = encode(&table, &provenance);
        file[8] = 2;
        assert_eq!(decode(&file), Err(CompiledError::Version(2)));
    }

    fn asn_sample() -> (AsnTable, Provenance) {
        let table = crate::db::load_asn(
            "192.0.2.0,192.0.2.127,64500,\"Example Hosting, LLC\"\n192.0.2.128,192.0.2.255,64501,\n\
             2001:db8::,2001:db8::ffff,64500,\"Example Hosting, LLC\"\n203.0.113.0,203.0.113.255,4200000000,Été\n"
                .as_bytes(),
        )
        .unwrap();
        (table, Provenance { date: "2026-06".into(), source: "ASN test fixture".into() })
    }

    #[test]
    fn an_asn_table_round_trips_with_its_organisations() {
        let (table, provenance) = asn_sample();
        let file = encode_asn(&table, &provenance);
        let (back, back_provenance) = decode_asn(&file).unwrap();
        assert_eq!((&back, &back_provenance), (&table, &provenance));
        assert_eq!(back.organisation(Asn(64500)), Some("Example Hosting, LLC"));
        assert_eq!(back.organisation(Asn(64501)), None);
        assert_eq!(back.organisation(Asn(4_200_000_000)), Some("Été"));
        assert_eq!(encode_asn(&back, &back_provenance), file, "canonical");
    }

    #[test]
    fn every_truncation_and_bit_flip_of_an_asn_file_is_refused() {
        let (table, provenance) = asn_sample();
        let file = encode_asn(&table, &provenance);
        for length in 0..file.len() {
            assert!(decode_asn(&file[..length]).is_err(), "accepted a file cut to {length} bytes");
        }
        for bit in 0..file.len() * 8 {
            let mut damaged = file.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(decode_asn(&damaged).is_err(), "accepted a flip of bit {bit}");
        }
    }

    #[test]
    fn the_header_tells_an_asn_file_from_a_country_file() {
        let (asn, provenance) = asn_sample();
        let (countries, _) = sample();
        assert!(holds_asns(&encode_asn(&asn, &provenance)));
        assert!(!holds_asns(&encode(&countries, &provenance)));
        assert!(!holds_asns(&MAGIC) && !holds_asns(b"192.0.2.0,192.0.2.255,64500,x\n"));
    }

    #[test]
    fn a_file_of_the_other_kind_says_what_it_holds() {
        let (asn, provenance) = asn_sample();
        let error = decode(&encode_asn(&asn, &provenance)).unwrap_err();
        assert_eq!(error, CompiledError::Kind { found: 2, expected: 1 });
        assert_eq!(error.to_string(), "the file holds AS numbers (value kind 2), not country codes");
        let (countries, provenance) = sample();
        let error = decode_asn(&encode(&countries, &provenance)).unwrap_err();
        assert_eq!(error.to_string(), "the file holds country codes (value kind 1), not AS numbers");
    }

    #[test]
    fn an_as_number_0_in_the_values_is_refused() {
        let (table, provenance) = asn_sample();
        let mut file = encode_asn(&table, &provenance);
        // The first value follows the header, the two texts and the value count.
        let first_value = HEADER + (2 + 7) + (2 + 16) + 4;
        file[first_value..first_value + 4].fill(0);
        let crc = crc32fast::hash(&file[HEADER..]);
        file[12..16].copy_from_slice(&crc.to_le_bytes());
        assert!(matches!(decode_asn(&file), Err(CompiledError::At { problem: "value is not of the file's kind", .. })));
    }

    #[test]
    fn a_consistent_body_with_a_zero_step_is_refused_by_validation() {
        let (table, provenance) = sample();
        let mut file = encode(&table, &provenance);
        // The second IPv4 entry's step multiple: make it 0, then fix the checksum so only
        // validation can tell.
        let v4_entries = HEADER + (2 + 7) + (2 + 12) + (4 + 2 * 2) + 4;
        let second_step = v4_entries + 1 + 1;
        file[second_step] = 0;
        let crc = crc32fast::hash(&file[HEADER..]);
        file[12..16].copy_from_slice(&crc.to_le_bytes());
        assert!(matches!(decode(&file), Err(CompiledError::At { problem: "range step is zero or too large", .. })));
    }
}
