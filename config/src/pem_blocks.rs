//! PEM files read whole or not at all: every `-----BEGIN` must open a block that parses, so a
//! file cut short while it was being written (a trust bundle, a CRL file, a chain) is an error
//! instead of a file with its last block silently left out.

/// The PEM blocks of `bytes`; an error when the text is not PEM or when a block is incomplete
/// (every line that starts with five dashes must be the BEGIN or END line of a parsed block).
pub(crate) fn parse_all(bytes: &[u8]) -> Result<Vec<pem::Pem>, String> {
    let blocks = pem::parse_many(bytes).map_err(|e| format!("invalid PEM: {e}"))?;
    let boundaries = bytes
        .split(|&b| b == b'\n')
        .filter(|line| line.trim_ascii_start().starts_with(b"-----"))
        .count();
    if boundaries != 2 * blocks.len() {
        return Err(format!(
            "incomplete PEM: {} complete blocks but {boundaries} \"-----\" boundary lines (a truncated or half-written file?)",
            blocks.len()
        ));
    }
    Ok(blocks)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BLOCK: &str = "-----BEGIN CERTIFICATE-----\nAAEC\n-----END CERTIFICATE-----\n";

    #[test]
    fn whole_files_parse_and_cut_ones_do_not() {
        let two = format!("{BLOCK}{BLOCK}");
        assert_eq!(parse_all(two.as_bytes()).expect("two").len(), 2);
        for cut in [BLOCK.len() + 5, BLOCK.len() + 30, two.len() - 2] {
            let err = parse_all(&two.as_bytes()[..cut]).expect_err("cut");
            assert!(err.contains("incomplete PEM"), "{cut}: {err}");
        }
        // Text around blocks (comments, openssl's bag attributes) is fine.
        let commented = format!("# roots\nsubject=CN = x\n{BLOCK}\n");
        assert_eq!(parse_all(commented.as_bytes()).expect("one").len(), 1);
    }
}
