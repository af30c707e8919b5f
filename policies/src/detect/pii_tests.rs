//! PII validators: valid values found with their exact range, checksum failures, invalid ranges
//! and documented examples not.

use super::*;
use crate::detect::test_samples::*;

fn pii(text: &str) -> Vec<(DataClass, String)> {
    let scanner = PiiScanner::new().unwrap();
    let mut out = Vec::new();
    scanner.scan(text.as_bytes(), &mut |c, r| out.push((c, text[r].to_string())));
    out
}

fn grouped(number: &str, sep: char, sizes: &[usize]) -> String {
    let mut out = String::new();
    let mut at = 0;
    for (i, n) in sizes.iter().enumerate() {
        if i > 0 {
            out.push(sep);
        }
        out.push_str(&number[at..at + n]);
        at += n;
    }
    assert_eq!(at, number.len());
    out
}

#[test]
fn luhn_reference_values() {
    let digits = |s: &str| s.bytes().map(|b| b - b'0').collect::<Vec<_>>();
    assert!(luhn_valid(&digits("4111111111111111")));
    assert!(luhn_valid(&digits("79927398713")), "the Luhn article's example");
    assert!(!luhn_valid(&digits("4111111111111112")));
    assert!(!luhn_valid(&[]));
}

#[test]
fn payment_cards_of_every_brand_and_format() {
    let mut r = Rng::new(21);
    let brands: &[(&str, &str, usize)] = &[
        ("visa 16", "4", 16),
        ("visa 13", "4", 13),
        ("visa 19", "4", 19),
        ("mastercard 5-series", "53", 16),
        ("mastercard 2-series", "2720", 16),
        ("amex", "37", 15),
        ("discover", "6011", 16),
        ("discover 65", "65", 19),
        ("jcb", "3530", 16),
        ("diners", "36", 14),
        ("unionpay", "62", 17),
        ("maestro", "6759", 13),
    ];
    for (name, prefix, len) in brands {
        let n = card(&mut r, prefix, *len);
        assert_eq!(pii(&format!("card: {n}.")), vec![(DataClass::PaymentCard, n.clone())], "{name}");
    }
    let visa = card(&mut r, "4", 16);
    for sep in [' ', '-'] {
        let g = grouped(&visa, sep, &[4, 4, 4, 4]);
        assert_eq!(pii(&format!("pay with {g} now")), vec![(DataClass::PaymentCard, g.clone())], "{sep:?}");
    }
    let amex = card(&mut r, "34", 15);
    let g = grouped(&amex, ' ', &[4, 6, 5]);
    assert_eq!(pii(&g), vec![(DataClass::PaymentCard, g.clone())]);
    // The well-known test numbers are real-format numbers and count (see the module docs).
    assert_eq!(pii("4111 1111 1111 1111").len(), 1);
}

#[test]
fn card_near_misses() {
    let mut r = Rng::new(22);
    let visa = card(&mut r, "4", 16);
    let last = visa.as_bytes()[15] - b'0';
    let bad = format!("{}{}", &visa[..15], (last + 1) % 10);
    let cases: Vec<(&str, String)> = vec![
        ("luhn fails", bad),
        ("one digit repeated", "0000 0000 0000 0000".into()),
        ("one digit repeated, luhn-valid", "5555555555555555555".into()),
        ("no brand starts with 9", card(&mut r, "9", 16)),
        ("no brand starts with 1", card(&mut r, "1", 16)),
        ("amex must be 15", card(&mut r, "37", 16)),
        ("mastercard must be 16", card(&mut r, "51", 19)),
        ("twelve digits", card(&mut r, "4", 12)),
        ("twenty digits", card(&mut r, "4", 20)),
        ("mixed separators", format!("{} {}-{} {}", &visa[0..4], &visa[4..8], &visa[8..12], &visa[12..16])),
        ("inside a longer token", format!("id{visa}x")),
    ];
    for (name, text) in cases {
        assert_eq!(pii(&text), vec![], "{name}: {text}");
    }
}

#[test]
fn card_followed_or_preceded_by_more_digit_groups_is_still_found() {
    let mut r = Rng::new(23);
    let g = grouped(&card(&mut r, "4", 16), ' ', &[4, 4, 4, 4]);
    for text in [format!("{g} 12"), format!("12 {g}"), format!("{g} 2024 10")] {
        let found = pii(&text);
        assert_eq!(found.iter().filter(|(c, _)| *c == DataClass::PaymentCard).count(), 1, "{text}");
        assert_eq!(found[0].1, g, "{text}");
    }
}

#[test]
fn two_cards_in_a_row_are_two() {
    let mut r = Rng::new(24);
    let a = card(&mut r, "4", 16);
    let b = card(&mut r, "51", 16);
    assert_eq!(pii(&format!("{a} {b}")).len(), 2);
    assert_eq!(pii(&format!("{a},{b}")).len(), 2);
}

#[test]
fn ibans_with_mod97() {
    let mut r = Rng::new(31);
    for (cc, len) in [("DE", 22), ("FR", 27), ("NL", 18), ("NO", 15), ("MT", 31)] {
        let iban = iban(&mut r, cc, len);
        assert!(iban_checksum_ok(iban.as_bytes()), "{iban}");
        assert_eq!(pii(&format!("IBAN: {iban}.")), vec![(DataClass::Iban, iban.clone())], "{cc}");
        // Printed form, groups of four.
        let printed: Vec<String> = iban.as_bytes().chunks(4).map(|c| String::from_utf8(c.to_vec()).unwrap()).collect();
        let printed = printed.join(" ");
        assert_eq!(pii(&format!("to {printed} EUR")), vec![(DataClass::Iban, printed.clone())], "{cc} printed");
        let lower = iban.to_lowercase();
        assert_eq!(pii(&lower), vec![(DataClass::Iban, lower.clone())], "{cc} lower case");
    }
}

#[test]
fn iban_near_misses_and_documented_examples() {
    let mut r = Rng::new(32);
    let good = iban(&mut r, "DE", 22);
    let check: u32 = good[2..4].parse().unwrap();
    let bad_check = format!("DE{:02}{}", (check + 1) % 100, &good[4..]);
    let cases: Vec<(&str, String)> = vec![
        ("bad check digits", bad_check),
        ("transposed digits", format!("{}{}{}", &good[..10], &good[11..12], &good[10..11]) + &good[12..]),
        ("too long for DE", format!("{good}1")),
        ("too short for DE", good[..21].to_string()),
        ("unknown country", format!("ZZ{}", &good[2..])),
        ("wikipedia example", "GB82 WEST 1234 5698 7654 32".into()),
        ("documentation example", "DE89 3704 0044 0532 0130 00".into()),
    ];
    for (name, text) in cases {
        assert_eq!(pii(&text), vec![], "{name}: {text}");
    }
}

#[test]
fn ssn_valid_and_invalid_ranges() {
    for ok in ["536-22-4875", "001-01-0001", "665-99-9999", "899-45-1234", "536 22 4875", "536.22.4875"] {
        assert_eq!(pii(&format!("ssn {ok}")), vec![(DataClass::UsSsn, ok.to_string())], "{ok}");
    }
    let invalid = [
        ("area 000", "000-12-3456"),
        ("area 666", "666-12-3456"),
        ("area 900", "900-12-3456"),
        ("area 999", "999-12-3456"),
        ("group 00", "536-00-4875"),
        ("serial 0000", "536-22-0000"),
        ("woolworth card", "078-05-1120"),
        ("ssa pamphlet", "219-09-9999"),
        ("lifelock ad", "457-55-5462"),
        ("documentation placeholder", "123-45-6789"),
        ("one digit repeated", "555-55-5555"),
        ("mixed separators", "536-22 4875"),
        ("longer number before", "1-536-22-4875"),
        ("longer number after", "536-22-4875-1"),
        ("nine bare digits", "536224875"),
    ];
    for (name, text) in invalid {
        assert_eq!(pii(text), vec![], "{name}: {text}");
    }
}

#[test]
fn emails_need_a_real_domain() {
    for ok in ["jane.doe@example.com", "a+tag@mail.example.co.uk", "x_y%z@sub-domain.io"] {
        assert_eq!(pii(&format!("<{ok}>")), vec![(DataClass::Email, ok.to_string())], "{ok}");
    }
    // Trailing punctuation is not part of the address.
    assert_eq!(pii("mail bob@example.org."), vec![(DataClass::Email, "bob@example.org".into())]);
    for bad in [
        "user@localhost",
        "user@example",
        "user@example.c",
        "user@example.123",
        "package@1.2.3",
        "jane..doe@example.com",
        "user@example..com",
        "user@-example.com",
        "@example.com",
        "user@.example.com",
    ] {
        assert_eq!(pii(bad), vec![], "{bad}");
    }
}
