//! ncat's `-x` hex dump: each chunk of bytes (one read) is dumped on its
//! own, offsets restarting at 0000, without a direction mark, in lines of
//! exactly 73 characters:
//!
//! ```text
//! 0000   48 65 6c 6c 6f 2c 20 53  65 72 76 65 72 21 0a     Hello,.Server!.
//! ```
//!
//! Only bytes 0x21..=0x7e are shown as themselves; everything else
//! (space included) is a `.`, as nbase's hexdump does.

use std::fmt::Write;

/// Renders one chunk.
pub fn render(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(16) * 74);
    for (i, line) in data.chunks(16).enumerate() {
        let _ = write!(out, "{:04x}   ", i * 16);
        for j in 0..16 {
            match line.get(j) {
                Some(b) => {
                    let _ = write!(out, "{b:02x} ");
                }
                None => out.push_str("   "),
            }
            if j == 7 {
                out.push(' ');
            }
        }
        out.push(' ');
        for j in 0..16 {
            out.push(match line.get(j) {
                Some(&b) if (0x21..=0x7e).contains(&b) => b as char,
                Some(_) => '.',
                None => ' ',
            });
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_ncat_byte_for_byte() {
        // Lines captured from ncat 7.93's -x output for the same bytes.
        let data: Vec<u8> = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789\x00\x01\x02\xff\xfe\n".to_vec();
        let expected = "\
0000   41 42 43 44 45 46 47 48  49 4a 4b 4c 4d 4e 4f 50  ABCDEFGHIJKLMNOP
0010   51 52 53 54 55 56 57 58  59 5a 30 31 32 33 34 35  QRSTUVWXYZ012345
0020   36 37 38 39 00 01 02 ff  fe 0a                    6789......      
";
        assert_eq!(render(&data), expected);
        assert_eq!(
            render(b"server says hi\n"),
            "0000   73 65 72 76 65 72 20 73  61 79 73 20 68 69 0a     server.says.hi. \n"
        );
    }

    #[test]
    fn every_line_is_73_characters() {
        let data: Vec<u8> = (0..=255u8).collect();
        for n in [1, 7, 8, 9, 15, 16, 17, 256] {
            for line in render(&data[..n]).lines() {
                assert_eq!(line.len(), 73, "{n} bytes: {line:?}");
            }
        }
        assert_eq!(render(&[]), "");
    }
}
