//! Decimal numbers written straight into a byte buffer, without `fmt` (the proxy's status
//! lines and lengths, the access log's numbers): both are on every request's path.

/// Appends `n` in decimal, zero-padded to at least `width` digits.
pub fn push_padded(out: &mut Vec<u8>, mut n: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let len = (digits.len() - i).max(width).min(digits.len());
    out.extend_from_slice(&digits[digits.len() - len..]);
}

/// Appends `n` in decimal.
pub fn push_decimal(out: &mut Vec<u8>, n: u64) {
    push_padded(out, n, 1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_padding() {
        let mut out = Vec::new();
        push_decimal(&mut out, 0);
        out.push(b' ');
        push_decimal(&mut out, u64::MAX);
        out.push(b' ');
        push_padded(&mut out, 7, 3);
        out.push(b' ');
        push_padded(&mut out, 1234, 3);
        assert_eq!(out, b"0 18446744073709551615 007 1234");
    }
}
