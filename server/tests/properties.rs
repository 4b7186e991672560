//! Property tests (proptest): what every request and every app definition goes through (the signature
//! check, the inputs, templates, the definition loader) answers any input with a value or an error, never a
//! panic; and a signature holds for exactly the bytes it was made for.

use app::definition::template::Template;
use app::definition::{AppDefinition, BUNDLED_EXAMPLE};
use ibex::signed::inputs::Inputs;
use ibex::signed::signature::{signed_headers, Verifier};
use proptest::collection::vec;
use proptest::prelude::*;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

const NOW: i64 = 1_800_000_000_000;

fn verifier() -> Verifier {
    Verifier::new(
        &["secret-1".to_owned(), "secret-2".to_owned()],
        std::time::Duration::from_secs(300),
    )
    .unwrap()
}

/// The headers that HTTP can carry at all (a value with a newline never reaches ibex).
fn headers<'a>(pairs: impl IntoIterator<Item = (&'a str, String)>) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(value.as_bytes()),
        ) {
            map.insert(name, value);
        }
    }
    map
}

fn example() -> AppDefinition {
    AppDefinition::from_toml(BUNDLED_EXAMPLE).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn any_signature_headers_get_an_answer(
        account in ".{0,300}",
        timestamp in "[0-9a-z.+-]{0,30}",
        signature in "[0-9a-fA-Fv=,: ]{0,140}",
        body in vec(any::<u8>(), 0..512),
    ) {
        let h = headers([
            ("x-ib-exchange-req-accountkey", account),
            ("x-ib-exchange-req-timestamp", timestamp),
            ("x-ib-exchange-req-signature", signature),
        ]);
        // Forged headers essentially never verify; what matters is an answer either way.
        let _ = verifier().verify(&h, &body, NOW);
    }

    #[test]
    fn a_signature_holds_for_its_bytes_only(
        body in vec(any::<u8>(), 1..512),
        at in any::<usize>(),
        bit in 0u8..8,
        skew in -299_000i64..299_000,
    ) {
        let h = headers(signed_headers("secret-2", "ACCT", NOW + skew, &body));
        prop_assert!(verifier().verify(&h, &body, NOW).is_ok());
        let mut tampered = body.clone();
        tampered[at % body.len()] ^= 1 << bit;
        prop_assert!(verifier().verify(&h, &tampered, NOW).is_err());
        let other = headers(signed_headers("not-a-secret", "ACCT", NOW, &body));
        prop_assert!(verifier().verify(&other, &body, NOW).is_err());
    }

    #[test]
    fn templates_parse_or_refuse(text in "[{}a-z._| 0-9\\-]{0,80}|.{0,120}") {
        let _ = Template::parse(&text);
    }

    #[test]
    fn inputs_are_taken_or_refused(
        path in ".{0,40}",
        query in "[a-z_=&%0-9A-F.+-]{0,120}|.{0,80}",
        body in vec(any::<u8>(), 0..200),
        json_body in "\\{(\"[a-z_]{1,12}\": ?(\"[^\"]{0,20}\"|-?[0-9]{1,25}(\\.[0-9]{1,5})?|true|null|\\[\\]|\\{\\}), ?){0,4}\"x\": 1\\}",
    ) {
        let definition = example();
        for function in &definition.functions {
            let path: Vec<(&str, &str)> = function
                .path_inputs()
                .map(|input| (input.name.as_str(), path.as_str()))
                .collect();
            let _ = Inputs::collect(function, path.iter().copied(), Some(&query), &body);
            let _ = Inputs::collect(function, path.iter().copied(), None, json_body.as_bytes());
        }
    }

    #[test]
    fn definitions_load_or_refuse(at in any::<usize>(), insert in ".{0,30}|[\\[\\]{}=\"\\n#a-z_.]{0,30}", cut in 0usize..200) {
        // The bundled example with text inserted and some cut away somewhere: a load error, never a panic.
        let mut text = BUNDLED_EXAMPLE.to_owned();
        let mut at = at % text.len();
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        let mut end = (at + cut).min(text.len());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.replace_range(at..end, &insert);
        let _ = AppDefinition::from_toml(&text);
    }
}
