//! Attachment: a stated `size` must be the size of the `data` it comes with. R4 Attachment
//! (datatypes.html#Attachment): `size` is "the number of bytes of data that make up this
//! content (before base64 encoding, if that is done)", so a `size` that differs from the
//! decoded length of `data` describes other content than the one sent.

use serde_json::Value;

use super::outcome::Outcome;

/// The number of bytes `data` (base64, whitespace ignored) decodes to; `None` when it is not
/// well-formed base64 (the structure check reports that).
pub fn decoded_len(data: &str) -> Option<u64> {
    let chars: Vec<u8> = data.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if !chars.len().is_multiple_of(4) {
        return None;
    }
    let padding = chars.iter().rev().take_while(|&&b| b == b'=').count();
    if padding > 2 {
        return None;
    }
    Some((chars.len() / 4 * 3 - padding) as u64)
}

/// Checks an Attachment at `at`.
pub fn check(value: &Value, at: &str, out: &mut Outcome) {
    let (Some(size), Some(data)) = (
        value.get("size").and_then(Value::as_u64),
        value.get("data").and_then(Value::as_str),
    ) else {
        return;
    };
    if let Some(actual) = decoded_len(data) {
        if actual != size {
            out.error(
                "value",
                &format!("{at}.size"),
                format!(
                    "The stated size {size} does not match the size of the data, {actual} bytes"
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_decoded_length_counts_padding() {
        assert_eq!(decoded_len("YWJj"), Some(3));
        assert_eq!(decoded_len("YWI="), Some(2));
        assert_eq!(decoded_len("YQ=="), Some(1));
        assert_eq!(decoded_len("YQ="), None);
    }
}
