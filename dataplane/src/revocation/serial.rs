//! Serial numbers as compact big-endian magnitudes (the in-memory key form),
//! converted from and to the normal hexadecimal form of the store files.

/// Serials up to this many magnitude bytes are cached; RFC 5280 allows 20
/// octets, so only malformed or exotic certificates take the uncached path.
pub(crate) const CACHED_SERIAL_BYTES: usize = 32;

/// `serial_be` without leading zero bytes (zero becomes the empty slice).
pub(crate) fn magnitude(serial_be: &[u8]) -> &[u8] {
    let first = serial_be
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(serial_be.len());
    &serial_be[first..]
}

/// The magnitude bytes of a serial in normal form (lowercase hex, no leading
/// zeros). Returns `None` for a non-hex digit.
pub(crate) fn from_normal_hex(normal: &str) -> Option<Box<[u8]>> {
    let digits = normal.as_bytes();
    let mut bytes = Vec::with_capacity(digits.len().div_ceil(2));
    // An odd number of digits means the first byte has one digit.
    let (head, rest) = digits.split_at(digits.len() % 2);
    if let Some(&d) = head.first() {
        bytes.push(hex_value(d)?);
    }
    for pair in rest.chunks_exact(2) {
        bytes.push(hex_value(pair[0])? << 4 | hex_value(pair[1])?);
    }
    Some(magnitude(&bytes).into())
}

/// The normal hexadecimal form of a magnitude (`"0"` for zero).
pub(crate) fn to_normal_hex(magnitude_be: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let bytes = magnitude(magnitude_be);
    let mut text = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        text.push(char::from(DIGITS[usize::from(b >> 4)]));
        text.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    match text.strip_prefix('0') {
        Some(rest) => rest.to_owned(),
        None if text.is_empty() => "0".to_owned(),
        None => text,
    }
}

/// Longest key a store lookup accepts, in characters (the store key limit).
const MAX_KEY_CHARS: usize = 512;

/// The magnitude of a serial written as a store key (`0A:1b:2c`, `a1b2c`, `000a1b`): hex
/// digits in any case, optionally in non-empty groups separated by `:`, at most 512
/// characters. Written into `out` without allocating; None for anything else.
pub(crate) fn key_magnitude<'a>(
    key: &str,
    out: &'a mut [u8; MAX_KEY_CHARS / 2],
) -> Option<&'a [u8]> {
    let text = key.as_bytes();
    if text.is_empty() || text.len() > MAX_KEY_CHARS {
        return None;
    }
    if text.first() == Some(&b':') || text.last() == Some(&b':') {
        return None;
    }
    let digits = text.iter().filter(|&&b| b != b':').count();
    let mut nibble = (MAX_KEY_CHARS - digits) % 2 == 1;
    let mut pos = (MAX_KEY_CHARS - digits) / 2;
    out.fill(0);
    let mut previous_colon = false;
    for &b in text {
        if b == b':' {
            if previous_colon {
                return None;
            }
            previous_colon = true;
            continue;
        }
        previous_colon = false;
        let value = hex_value(b)?;
        if nibble {
            out[pos] |= value;
            pos += 1;
        } else {
            out[pos] = value << 4;
        }
        nibble = !nibble;
    }
    Some(magnitude(out))
}

/// The value of one hexadecimal digit.
fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_strips_leading_zeros() {
        assert_eq!(magnitude(&[0, 0, 1, 0]), &[1, 0]);
        assert_eq!(magnitude(&[0, 0]), &[] as &[u8]);
        assert_eq!(from_normal_hex("abc").as_deref(), Some(&[0x0a, 0xbc][..]));
        assert_eq!(from_normal_hex("0").as_deref(), Some(&[][..]));
        assert_eq!(from_normal_hex("0g"), None);
        assert_eq!(to_normal_hex(&[0x0a, 0xbc]), "abc");
        assert_eq!(to_normal_hex(&[0x00, 0x10]), "10");
        assert_eq!(to_normal_hex(&[]), "0");
        assert_eq!(to_normal_hex(&[0]), "0");
        let long: Vec<u8> = (1..=40).collect();
        let text = to_normal_hex(&long);
        assert_eq!(from_normal_hex(&text).as_deref(), Some(&long[..]));
    }

    #[test]
    fn store_keys_in_every_written_form() {
        let mut buf = [0u8; 256];
        for key in ["0a1b2c", "0A:1B:2C", "a1b2c", "00:0a:1b:2c", "A1B2C"] {
            assert_eq!(
                key_magnitude(key, &mut buf),
                Some(&[0x0a, 0x1b, 0x2c][..]),
                "{key}"
            );
        }
        assert_eq!(key_magnitude("0", &mut buf), Some(&[][..]));
        for bad in ["", ":0a", "0a:", "0a::1b", "0x1b", "revoked", "1 2"] {
            assert_eq!(key_magnitude(bad, &mut buf), None, "{bad}");
        }
        let long = "f".repeat(512);
        assert_eq!(key_magnitude(&long, &mut buf).map(<[u8]>::len), Some(256));
        assert_eq!(key_magnitude(&"f".repeat(513), &mut buf), None);
    }
}
