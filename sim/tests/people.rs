//! The simulated People API over real HTTP, held to Infobip's published OpenAPI document (People 3.210.0): the
//! v3 upsert takes only the documented batch shape and answers 207 by index, mixing CREATED, UPDATED,
//! NOT_MODIFIED and per-person errors; the old single-person shape with a query is refused with the documented
//! 400; the documented limits answer 429 with `Retry-After`; v2 keeps its semantics (PUT clears what it omits,
//! PATCH appends) and its error shape.

use ibex_sim::people::{router, API_KEY};
use serde_json::{json, Value};

async fn start() -> (String, reqwest::Client) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router(API_KEY)).await.unwrap() });
    (base, reqwest::Client::new())
}

/// The documented limits would slow most tests down; `limits` has its own test.
async fn unlimited(base: &str, http: &reqwest::Client) {
    http.post(format!("{base}/_sim/people"))
        .json(&json!({"reads_per_sec": 0, "writes_per_sec": 0, "creates_per_sec": 0}))
        .send()
        .await
        .unwrap();
}

async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Value,
) -> (u16, Value) {
    let response = http
        .request(method, url)
        .header("authorization", format!("App {API_KEY}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn state(base: &str, http: &reqwest::Client) -> Value {
    http.get(format!("{base}/_sim/people"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_old_single_person_upsert_is_refused() {
    let (base, http) = start().await;
    unlimited(&base, &http).await;
    let upsert = format!("{base}/people/3/persons/upsert");
    // What ibex sent before: one v2-shaped person, identified in the query.
    let (status, body) = call(
        &http,
        reqwest::Method::PATCH,
        format!("{upsert}?identifier=c-1&type=EXTERNAL_ID"),
        json!({"externalId": "c-1", "contactInformation": {"email": [{"address": "ana@example.com"}]}}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["code"], 400100, "{body}");
    assert_eq!(body["details"][0]["property"], "identifier", "{body}");
    // Without the query, the body is still not the documented one.
    let (status, body) = call(
        &http,
        reqwest::Method::PUT,
        upsert.clone(),
        json!({"externalId": "c-1", "firstName": "Ana"}),
    )
    .await;
    assert_eq!(
        (status, &body["code"], &body["details"][0]["property"]),
        (400, &json!(400104), &json!("persons")),
        "{body}"
    );
    // A batch of v2-shaped persons: contactInformation must be a list.
    let (status, body) = call(
        &http,
        reqwest::Method::PATCH,
        upsert.clone(),
        json!({"persons": [{"externalId": "c-1", "contactInformation": {"email": [{"address": "ana@example.com"}]}}]}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["details"][0]["property"], "persons[0].contactInformation",
        "{body}"
    );
    // Malformed JSON, an empty batch and one over 1000 persons.
    let response = http
        .patch(&upsert)
        .header("authorization", format!("App {API_KEY}"))
        .header("content-type", "application/json")
        .body("{\"persons\": [")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], 400103, "{body}");
    for persons in [
        json!([]),
        Value::Array(
            (0..1001)
                .map(|i| json!({"externalId": format!("x-{i}")}))
                .collect(),
        ),
    ] {
        let (status, body) = call(
            &http,
            reqwest::Method::PATCH,
            upsert.clone(),
            json!({ "persons": persons }),
        )
        .await;
        assert_eq!((status, &body["code"]), (400, &json!(400100)), "{body}");
    }
    let people = state(&base, &http).await;
    assert_eq!(people["persons"], json!([]), "nothing was written");
    assert_eq!(
        people["stats"]["requests"]["PATCH /people/3/persons/upsert"], 5,
        "{people}"
    );
}

#[tokio::test]
async fn a_batch_answers_207_by_index() {
    let (base, http) = start().await;
    unlimited(&base, &http).await;
    let upsert = format!("{base}/people/3/persons/upsert");
    // The document's own "valid request - single person" example.
    let (status, body) = call(
        &http,
        reqwest::Method::PATCH,
        upsert.clone(),
        json!({"persons": [{
            "externalId": "3", "firstName": "Jane", "lastName": "Smith", "address": "67 Farringdon Road",
            "city": "London", "country": "United Kingdom", "gender": "FEMALE", "birthDate": "1966-01-15",
            "middleName": "Janie", "preferredLanguage": "en-gb", "profilePicture": "http://profile.com",
            "customAttributes": {"Contract Expiry": "2018-06-01", "Company": "Acme",
                "ShoppingCartList": [{"productName": "Sneakers", "productPrice": 25.33}]},
            "contactInformation": [{"identifier": "john.doe@example.com", "type": "EMAIL"},
                                   {"identifier": "41793026727", "type": "PHONE"}],
            "tags": ["VIP Customers", "New Customers"]}]}),
    )
    .await;
    assert_eq!(status, 207, "{body}");
    assert_eq!(body["errors"], json!([]));
    assert_eq!(body["results"][0]["status"], "CREATED", "{body}");
    assert_eq!(body["results"][0]["index"], 0);
    let seed = call(
        &http,
        reqwest::Method::PATCH,
        upsert.clone(),
        json!({"persons": [{"externalId": "4", "city": "Paris"}]}),
    )
    .await;
    assert_eq!(seed.1["results"][0]["status"], "CREATED");

    // One batch: unchanged, updated, new, an invalid email (the document's example), a contact without a type,
    // a tag named twice (`uniqueItems`), and a match by email for a person without externalId.
    let (status, body) = call(
        &http,
        reqwest::Method::PATCH,
        upsert.clone(),
        json!({"persons": [
            {"externalId": "4", "city": "Paris"},
            {"externalId": "3", "firstName": "Janet"},
            {"externalId": "5", "firstName": "Joe"},
            {"firstName": "Joe", "contactInformation": [{"identifier": "john.doe@example", "type": "EMAIL"}]},
            {"firstName": "Joe", "contactInformation": [{"identifier": "joe@example.com"}]},
            {"externalId": "6", "tags": ["a", "a"]},
            {"nickName": "JD", "contactInformation": [{"identifier": "john.doe@example.com", "type": "EMAIL"}]},
        ]}),
    )
    .await;
    assert_eq!(status, 207, "{body}");
    let statuses: Vec<(u64, &str)> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["index"].as_u64().unwrap(), r["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        statuses,
        [
            (0, "NOT_MODIFIED"),
            (1, "UPDATED"),
            (2, "CREATED"),
            (6, "UPDATED")
        ]
    );
    let errors: Vec<(u64, u64, &str, &str)> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["index"].as_u64().unwrap(),
                e["code"].as_u64().unwrap(),
                e["details"][0]["property"].as_str().unwrap(),
                e["details"][0]["message"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        errors[0],
        (
            3,
            400100,
            "persons[3].contactInformation[0].identifier",
            "Email address is invalid"
        )
    );
    assert_eq!(
        errors[1],
        (
            4,
            400100,
            "persons[4].contactInformation[0].type",
            "Must not be null"
        )
    );
    assert_eq!((errors[2].0, errors[2].2), (5, "persons[5].tags"));
    assert_eq!(errors.len(), 3);
    assert_eq!(
        body["errors"][0]["message"],
        "One or more properties of the person are invalid"
    );

    let people = state(&base, &http).await;
    let persons = people["persons"].as_array().unwrap();
    assert_eq!(persons.len(), 3, "{persons:?}");
    let jane = persons.iter().find(|p| p["externalId"] == "3").unwrap();
    // PATCH keeps what it omits; the contacts are stored (and read back by v2) in v2's shape.
    assert_eq!(
        (&jane["firstName"], &jane["lastName"], &jane["nickName"]),
        (&json!("Janet"), &json!("Smith"), &json!("JD"))
    );
    assert_eq!(
        jane["contactInformation"]["phone"],
        json!([{"number": "41793026727"}])
    );
    let stats = &people["stats"];
    assert_eq!(
        (
            &stats["creates"],
            &stats["updates"],
            &stats["unchanged"],
            &stats["refused"]
        ),
        (&json!(3), &json!(2), &json!(1), &json!(3)),
        "{stats}"
    );

    // PUT is the full upsert: what it omits is cleared.
    let (status, body) = call(
        &http,
        reqwest::Method::PUT,
        upsert,
        json!({"persons": [{"externalId": "3", "firstName": "Jane"}]}),
    )
    .await;
    assert_eq!(
        (status, &body["results"][0]["status"]),
        (207, &json!("UPDATED"))
    );
    let people = state(&base, &http).await;
    let jane = people["persons"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["externalId"] == "3")
        .unwrap()
        .clone();
    assert_eq!(
        (&jane["lastName"], &jane["tags"]),
        (&Value::Null, &json!([])),
        "{jane}"
    );
}

#[tokio::test]
async fn limits_are_the_documented_ones() {
    let (base, http) = start().await;
    let upsert = format!("{base}/people/3/persons/upsert");
    let mut answers = Vec::new();
    for i in 0..6 {
        let response = http
            .patch(&upsert)
            .header("authorization", format!("App {API_KEY}"))
            .json(&json!({"persons": [{"externalId": format!("r-{i}")}]}))
            .send()
            .await
            .unwrap();
        let retry_after = response.headers().get("retry-after").cloned();
        answers.push((
            response.status().as_u16(),
            retry_after,
            response.json::<Value>().await.unwrap(),
        ));
    }
    let statuses: Vec<u16> = answers.iter().map(|a| a.0).collect();
    assert_eq!(statuses, [207, 207, 207, 207, 207, 429], "5 requests/s");
    let (_, retry_after, body) = &answers[5];
    assert!(retry_after.is_some());
    assert_eq!(
        body["requestError"]["serviceException"]["messageId"],
        "TOO_MANY_REQUESTS"
    );
    // Each operation has its own limit: v2's GET is not spent by the upserts.
    let (status, _) = call(
        &http,
        reqwest::Method::GET,
        format!("{base}/people/2/persons?identifier=r-0&type=EXTERNAL_ID"),
        Value::Null,
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn v2_keeps_infobips_semantics() {
    let (base, http) = start().await;
    unlimited(&base, &http).await;
    let persons = format!("{base}/people/2/persons");

    let wrong = http
        .post(&persons)
        .header("authorization", "App wrong")
        .json(&json!({"externalId": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);

    let (status, _) = call(
        &http,
        reqwest::Method::POST,
        persons.clone(),
        json!({"externalId": "c-1", "firstName": "Ana", "lastName": "Horvat", "tags": ["a"]}),
    )
    .await;
    assert_eq!(status, 200);
    // A v3-shaped body is not v2's person.
    let (status, body) = call(
        &http,
        reqwest::Method::POST,
        persons.clone(),
        json!({"externalId": "c-9", "contactInformation": [{"type": "EMAIL", "identifier": "a@example.com"}]}),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["requestError"]["serviceException"]["validationErrors"]["contactInformation"]
            .is_array(),
        "{body}"
    );
    // An undocumented query parameter.
    let (status, body) = call(
        &http,
        reqwest::Method::GET,
        format!("{persons}?identifier=c-1&type=EXTERNAL_ID&expand=all"),
        Value::Null,
    )
    .await;
    assert_eq!(
        (
            status,
            &body["requestError"]["serviceException"]["messageId"]
        ),
        (400, &json!("BAD_REQUEST")),
        "{body}"
    );

    let by_id = format!("{persons}?identifier=c-1&type=EXTERNAL_ID");
    let (_, patched) = call(
        &http,
        reqwest::Method::PATCH,
        by_id.clone(),
        json!({"firstName": "Anna", "tags": ["b"]}),
    )
    .await;
    assert_eq!(
        (
            &patched["firstName"],
            &patched["lastName"],
            &patched["tags"]
        ),
        (&json!("Anna"), &json!("Horvat"), &json!(["a", "b"]))
    );
    let (_, replaced) = call(
        &http,
        reqwest::Method::PUT,
        by_id,
        json!({"externalId": "c-1", "firstName": "Ana"}),
    )
    .await;
    assert_eq!(
        replaced["lastName"],
        Value::Null,
        "PUT clears what it omits"
    );

    let (status, answer) = call(
        &http,
        reqwest::Method::POST,
        format!("{persons}/batch"),
        json!({"persons": [
            {"externalId": "c-2", "firstName": "Marko"},
            {"externalId": "c-1", "firstName": "Again"},
            {"externalId": "c-3", "contactInformation": {"email": [{"address": "no-at-sign"}]}},
        ]}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(answer["persons"].as_array().unwrap().len(), 1);
    assert_eq!(answer["persons"][0]["externalId"], "c-2");
    let errors: Vec<(u64, &str)> = answer["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["index"].as_u64().unwrap(),
                e["messageId"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(errors, [(1, "CONFLICT"), (2, "BAD_REQUEST")]);
}

/// What `on_delete` uses: v2's partial update appends a tag (`partial-person-update`: "Tags in the request are
/// appended to the profile tag list"), and `DELETE /people/2/persons?identifier=&type=` deletes one person (not
/// in the reference excerpt: v2's one-person query, `204`, `404` when there is none, anything else refused).
#[tokio::test]
async fn a_person_is_tagged_and_deleted() {
    let (base, http) = start().await;
    unlimited(&base, &http).await;
    let persons = format!("{base}/people/2/persons");
    let (status, _) = call(
        &http,
        reqwest::Method::POST,
        persons.clone(),
        json!({"externalId": "c-1", "tags": ["order-desk"]}),
    )
    .await;
    assert_eq!(status, 200);
    let one = format!("{persons}?identifier=c-1&type=EXTERNAL_ID");
    let (status, body) = call(
        &http,
        reqwest::Method::PATCH,
        one.clone(),
        json!({"tags": ["deleted-in-shop"]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["tags"], json!(["order-desk", "deleted-in-shop"]));

    let delete = |url: String, key: Option<&str>| {
        let mut request = http.delete(url);
        if let Some(key) = key {
            request = request.header("authorization", format!("App {key}"));
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    assert_eq!(delete(one.clone(), None).await.0, 401);
    let (status, body) = delete(format!("{persons}?type=EXTERNAL_ID"), Some(API_KEY)).await;
    assert_eq!(status, 400, "no identifier: {body}");
    let (status, body) = delete(format!("{one}&limit=1"), Some(API_KEY)).await;
    assert_eq!(
        status, 400,
        "a parameter the operation does not take: {body}"
    );
    assert!(
        body["requestError"]["serviceException"]["text"]
            .as_str()
            .unwrap()
            .contains("limit"),
        "{body}"
    );
    let (status, body) = delete(
        format!("{persons}?identifier=c-1&type=NICKNAME"),
        Some(API_KEY),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(delete(one.clone(), Some(API_KEY)).await.0, 204);
    let (status, body) = delete(one.clone(), Some(API_KEY)).await;
    assert_eq!(status, 404);
    assert_eq!(
        body["requestError"]["serviceException"]["messageId"],
        "NOT_FOUND"
    );
    let held = state(&base, &http).await;
    assert_eq!(held["persons"], json!([]));
    assert_eq!(held["stats"]["deletes"], json!(1));
    // Admitted (the key was right), whatever their answer.
    assert_eq!(
        held["stats"]["requests"]["DELETE /people/2/persons"],
        json!(5)
    );
}
