//! The fixed data the demo upstream serves: customers with payment cards, issues, files.
//!
//! Everything is generated from an index so that every run, and every test that compares a
//! response with an expectation, sees the same values.

use serde::Serialize;
use serde_json::{Value, json};

/// How many customers the CRM holds; ids run 1..=CUSTOMER_COUNT.
pub const CUSTOMER_COUNT: u32 = 50;

const FIRST_NAMES: [&str; 10] = [
    "Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Margaret", "Ken", "Frances", "John",
];
const LAST_NAMES: [&str; 10] = [
    "Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Hamilton", "Thompson", "Allen",
    "Backus",
];

/// Issuer prefixes of well-known test cards (Visa, Mastercard 5-series and 2-series), so that
/// data-class detectors that also check the issuer range recognise them.
const CARD_PREFIXES: [&str; 6] = ["411111", "555555", "424242", "510510", "401288", "222300"];

/// The AWS access key id served in `config/.env`. Deliberately not AWS's documented example key
/// (AKIAIOSFODNN7EXAMPLE), which secret scanners commonly allow-list.
pub const AWS_ACCESS_KEY_ID: &str = "AKIAZ7Q3MXKD4PLW2RYT";
/// The matching 40-character secret access key.
pub const AWS_SECRET_ACCESS_KEY: &str = "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";

/// A CRM record as listed; the payment card is only shown on the single-record view.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Customer {
    pub id: u32,
    pub name: String,
    pub email: String,
    pub phone: String,
}

/// A CRM record with its payment card, as `GET /api/customers/{id}` and `export_customers` show it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CustomerDetail {
    #[serde(flatten)]
    pub customer: Customer,
    pub card_number: String,
}

/// The customer with this id, or None outside 1..=CUSTOMER_COUNT.
pub fn customer(id: u32) -> Option<Customer> {
    if !(1..=CUSTOMER_COUNT).contains(&id) {
        return None;
    }
    let i = usize::try_from(id - 1).ok()?;
    // Walking the last names at a different pace than the first names gives 50 distinct pairs.
    let first = FIRST_NAMES.get(i % FIRST_NAMES.len())?;
    let last = LAST_NAMES.get((i + i / FIRST_NAMES.len()) % LAST_NAMES.len())?;
    Some(Customer {
        id,
        name: format!("{first} {last}"),
        email: format!(
            "{}.{}@example.com",
            first.to_lowercase(),
            last.to_lowercase()
        ),
        // 555-0100..0199 is the range reserved for fiction.
        phone: format!("+1-202-555-01{:02}", id % 100),
    })
}

/// All customers, in id order.
pub fn customers() -> Vec<Customer> {
    (1..=CUSTOMER_COUNT).filter_map(customer).collect()
}

/// The customer with its card, or None for an unknown id.
pub fn customer_detail(id: u32) -> Option<CustomerDetail> {
    let customer = customer(id)?;
    let card_number = card_number(id)?;
    Some(CustomerDetail {
        customer,
        card_number,
    })
}

/// All customers with their cards, in id order.
pub fn customer_details() -> Vec<CustomerDetail> {
    (1..=CUSTOMER_COUNT).filter_map(customer_detail).collect()
}

/// A 16-digit, Luhn-valid test card number for this customer: a test-card issuer prefix, nine
/// digits derived from the id (distinct for every id), and the Luhn check digit.
pub fn card_number(id: u32) -> Option<String> {
    let i = usize::try_from(id.checked_sub(1)?).ok()?;
    let prefix = CARD_PREFIXES.get(i % CARD_PREFIXES.len())?;
    // A prime multiplier spreads the digits so the numbers do not look sequential; below
    // 10^9 / 104_729 ids it never wraps, so numbers stay distinct.
    let middle = (u64::from(id) * 104_729) % 1_000_000_000;
    let payload = format!("{prefix}{middle:09}");
    let check = luhn_check_digit(&payload)?;
    Some(format!("{payload}{check}"))
}

/// The digit that, appended to `payload`, makes it Luhn-valid; None if payload has a non-digit.
pub fn luhn_check_digit(payload: &str) -> Option<u32> {
    // With the check digit appended, the payload's last digit is in a doubled position.
    let sum = luhn_sum(payload, true)?;
    Some((10 - sum % 10) % 10)
}

/// Whether `number` (digits only) passes the Luhn check; the server only makes numbers, the
/// tests check them.
#[cfg(test)]
pub fn luhn_valid(number: &str) -> bool {
    !number.is_empty() && luhn_sum(number, false).is_some_and(|sum| sum % 10 == 0)
}

fn luhn_sum(digits: &str, double_last: bool) -> Option<u32> {
    let mut sum = 0;
    for (pos, c) in digits.chars().rev().enumerate() {
        let d = c.to_digit(10)?;
        let doubled = (pos % 2 == 0) == double_last;
        sum += if doubled {
            let d2 = d * 2;
            if d2 > 9 { d2 - 9 } else { d2 }
        } else {
            d
        };
    }
    Some(sum)
}

/// The fake issue tracker behind `search_issues` and `get_issue`.
const ISSUES: [(u64, &str, &str); 6] = [
    (101, "Login page times out behind the proxy", "open"),
    (102, "Customer export misses phone numbers", "open"),
    (103, "Rate limit too strict for the billing job", "closed"),
    (104, "Crash when a config file is missing", "open"),
    (105, "Docs: explain the admin API", "open"),
    (106, "Search returns duplicate issues", "closed"),
];

fn issue_json(number: u64, title: &str, state: &str) -> Value {
    json!({
        "number": number,
        "title": title,
        "state": state,
        "url": format!("https://issues.example.com/demo/{number}"),
    })
}

/// Issues whose title contains `query` (case-insensitive; an empty query matches all). When
/// nothing matches, two made-up issues naming the query, so a demo search always shows results.
pub fn search_issues(query: &str) -> Vec<Value> {
    let needle = query.trim().to_lowercase();
    let found: Vec<Value> = ISSUES
        .iter()
        .filter(|(_, title, _)| title.to_lowercase().contains(&needle))
        .map(|(n, title, state)| issue_json(*n, title, state))
        .collect();
    if !found.is_empty() {
        return found;
    }
    vec![
        issue_json(
            201,
            &format!("{} fails intermittently", query.trim()),
            "open",
        ),
        issue_json(202, &format!("Investigate {}", query.trim()), "open"),
    ]
}

/// The issue with this number: a known one, or a made-up one, since any number "exists" here.
pub fn issue(number: u64) -> Value {
    let mut issue = ISSUES
        .iter()
        .find(|(n, _, _)| *n == number)
        .map(|(n, title, state)| issue_json(*n, title, state))
        .unwrap_or_else(|| issue_json(number, &format!("Issue #{number}"), "open"));
    if let Some(obj) = issue.as_object_mut() {
        obj.insert(
            "body".into(),
            Value::String("Steps to reproduce are in the first comment.".into()),
        );
    }
    issue
}

/// The content of a file of the fake repository, or None when there is no such file.
pub fn file(path: &str) -> Option<String> {
    let path = path.strip_prefix("./").unwrap_or(path);
    match path {
        "config/.env" => Some(format!(
            "# demo service configuration\n\
             APP_ENV=production\n\
             AWS_ACCESS_KEY_ID={AWS_ACCESS_KEY_ID}\n\
             AWS_SECRET_ACCESS_KEY={AWS_SECRET_ACCESS_KEY}\n\
             AWS_REGION=us-east-1\n"
        )),
        "README.md" => Some(
            "# demo-repo\n\n\
             A small service used by the Interlock demo. Issues are triaged by an agent;\n\
             customer data lives in the CRM API.\n"
                .into(),
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_card_number_is_luhn_valid_16_digits_and_distinct() {
        let cards: Vec<String> = (1..=CUSTOMER_COUNT)
            .map(|id| card_number(id).unwrap())
            .collect();
        for c in &cards {
            assert_eq!(c.len(), 16, "{c}");
            assert!(luhn_valid(c), "{c} is not Luhn-valid");
        }
        let mut unique = cards.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), cards.len());
    }

    #[test]
    fn luhn_matches_known_test_cards() {
        assert!(luhn_valid("4111111111111111"));
        assert!(luhn_valid("5555555555554444"));
        assert!(!luhn_valid("4111111111111112"));
        assert!(!luhn_valid(""));
        assert!(!luhn_valid("4111x11111111111"));
        assert_eq!(luhn_check_digit("411111111111111"), Some(1));
    }

    #[test]
    fn customers_are_deterministic_and_distinct() {
        let all = customers();
        assert_eq!(all.len(), 50);
        assert_eq!(all.first().unwrap().id, 1);
        assert_eq!(all.last().unwrap().id, 50);
        let mut emails: Vec<&str> = all.iter().map(|c| c.email.as_str()).collect();
        emails.sort_unstable();
        emails.dedup();
        assert_eq!(emails.len(), 50);
        assert_eq!(customer(1), customer(1));
        assert!(customer(0).is_none());
        assert!(customer(51).is_none());
        assert!(card_number(0).is_none());
        assert_eq!(customer_details().len(), 50);
    }

    #[test]
    fn env_file_holds_a_non_example_aws_key() {
        let env = file("config/.env").unwrap();
        assert!(env.contains(AWS_ACCESS_KEY_ID));
        assert!(!env.contains("AKIAIOSFODNN7EXAMPLE"));
        let id = AWS_ACCESS_KEY_ID.strip_prefix("AKIA").unwrap();
        assert_eq!(id.len(), 16);
        assert!(
            id.chars()
                .all(|c| c.is_ascii_uppercase() || ('2'..='7').contains(&c))
        );
        assert_eq!(AWS_SECRET_ACCESS_KEY.len(), 40);
        assert!(file("README.md").is_some());
        assert!(file("src/main.rs").is_none());
    }

    #[test]
    fn search_always_finds_something() {
        assert_eq!(search_issues("export").len(), 1);
        assert_eq!(search_issues("").len(), 6);
        assert_eq!(search_issues("zebra").len(), 2);
        assert_eq!(issue(103)["state"], "closed");
        assert_eq!(issue(7)["number"], 7);
    }
}
