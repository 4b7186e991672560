//! The manifests to paste into App shell, one per product, generated from the same definition that serves the
//! endpoints, so the URIs and schemas can never drift from what ibex answers. The shape follows Infobip's public
//! sample app (see docs/exchange-assumptions.md): there is no official schema.

use app::definition::{AppDefinition, Function, Input, Output, Product, ValueType, View};
use serde_json::{json, Map, Value};

/// `product: None` is the Conversations manifest (the context card).
pub fn manifest(definition: &AppDefinition, product: Option<Product>, public_url: &str) -> Value {
    let Some(product) = product else {
        return json!({
            "card": {
                "title": definition.app.card_title.as_deref().unwrap_or(&definition.app.name),
                "src": format!("{public_url}/card"),
                "size": "STANDARD",
            }
        });
    };
    let functions: Vec<&Function> = definition
        .functions
        .iter()
        .filter(|f| f.products.contains(&product))
        .collect();
    let entries: Vec<Value> = functions
        .iter()
        .map(|f| function_entry(f, public_url))
        .collect();
    match product {
        Product::Answers => json!({ "functions": entries }),
        Product::Flow => {
            let mut entries = entries;
            let mut actions: Vec<Value> = functions.iter().map(|f| flow_action(f)).collect();
            if let Some((entry, action)) = people_changed(definition, public_url) {
                entries.push(entry);
                actions.push(action);
            }
            json!({ "functions": entries, "actions": actions, "triggers": [] })
        }
    }
}

/// With `[sync.from_people]`, a Flow element for Moments flows started by "Change in People profile": it hands
/// ibex the person's identifier, and ibex writes that person to the partner (sync/moments.rs).
fn people_changed(definition: &AppDefinition, public_url: &str) -> Option<(Value, Value)> {
    let sync = definition.sync.as_ref()?;
    sync.from_people.as_ref()?;
    let name = "people-changed";
    let title = format!("Person's {}", sync.identifier.field());
    let entry = json!({
        "name": name,
        "description": format!(
            "Write a person changed in People to {} (use after \"Change in People profile\").",
            definition.app.name
        ),
        "method": "POST",
        "uri": format!("{public_url}{}", crate::sync::moments::PATH),
        "inSchema": {
            "type": "object",
            "properties": { "identifier": { "type": "string", "title": title } },
            "required": ["identifier"],
        },
        "outSchema": {
            "type": "object",
            "properties": {
                "written": { "type": "boolean", "title": "Written" },
                "key": { "type": "string", "title": "Record" },
            },
        },
    });
    let action = json!({
        "name": name,
        "async": false,
        "render": [{ "field": "identifier", "viewClass": "TextFieldView", "personalization": true, "dependencies": [] }],
    });
    Some((entry, action))
}

fn function_entry(function: &Function, public_url: &str) -> Value {
    let mut properties = Map::new();
    for input in &function.inputs {
        properties.insert(input.name.clone(), input_schema(input));
    }
    let required: Vec<&str> = function
        .inputs
        .iter()
        .filter(|i| i.required)
        .map(|i| i.name.as_str())
        .collect();
    json!({
        "name": function.name,
        "description": function.description,
        "method": function.method.as_str(),
        "uri": format!("{public_url}{}", function.route_path()),
        "inSchema": { "type": "object", "properties": properties, "required": required },
        "outSchema": outputs_schema(&function.outputs),
    })
}

fn input_schema(input: &Input) -> Value {
    json!({ "type": input.kind.as_str(), "title": input.title() })
}

fn outputs_schema(outputs: &[Output]) -> Value {
    let mut properties = Map::new();
    for output in outputs {
        let mut schema = json!({ "type": output.kind.as_str(), "title": output.title() });
        if output.kind == ValueType::Array {
            let path = format!("$.{}[*]", output.name);
            schema["items"] = if output.items.is_empty() {
                json!({ "type": "string" })
            } else {
                outputs_schema(&output.items)
            };
            if let Some(select) = &output.select {
                schema["selectViewOptionIdPath"] = json!(format!("{path}.{}", select.id));
                schema["selectViewOptionNamePath"] = json!(format!("{path}.{}", select.name));
            }
        }
        properties.insert(output.name.clone(), schema);
    }
    json!({ "type": "object", "properties": properties })
}

fn flow_action(function: &Function) -> Value {
    let render: Vec<Value> = function
        .inputs
        .iter()
        .map(|input| {
            let mut view = json!({
                "field": input.name,
                "viewClass": match input.view { View::Text => "TextFieldView", View::Select => "SelectView" },
                "personalization": input.personalization,
                "dependencies": [],
            });
            if let Some(model) = &input.options_from {
                view["model"] = json!(model);
            }
            view
        })
        .collect();
    json!({ "name": function.name, "async": false, "render": render })
}

#[cfg(test)]
mod tests {
    use super::*;
    use app::definition::BUNDLED_EXAMPLE;

    fn example() -> AppDefinition {
        AppDefinition::from_toml(BUNDLED_EXAMPLE).unwrap()
    }

    #[test]
    fn answers_manifest_lists_answers_functions_with_uris_and_schemas() {
        let m = manifest(
            &example(),
            Some(Product::Answers),
            "https://ibex.example.com",
        );
        let functions = m["functions"].as_array().unwrap();
        let status = functions
            .iter()
            .find(|f| f["name"] == "order-status")
            .unwrap();
        assert_eq!(status["method"], "GET");
        assert_eq!(
            status["uri"],
            "https://ibex.example.com/fn/order-status/{order_id}"
        );
        assert_eq!(status["inSchema"]["type"], "object");
        assert_eq!(status["inSchema"]["required"], json!(["order_id"]));
        assert_eq!(status["outSchema"]["properties"]["total"]["type"], "number");
        assert!(m.get("actions").is_none());
    }

    #[test]
    fn flow_manifest_has_actions_and_select_paths() {
        let m = manifest(&example(), Some(Product::Flow), "https://x");
        assert_eq!(m["triggers"], json!([]));
        let note = m["actions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == "add-order-note")
            .unwrap();
        assert_eq!(note["async"], false);
        let order_view = &note["render"][0];
        assert_eq!(order_view["viewClass"], "SelectView");
        assert_eq!(order_view["model"], "recent-orders");
        let list = m["functions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == "recent-orders")
            .unwrap();
        let orders = &list["outSchema"]["properties"]["orders"];
        assert_eq!(orders["selectViewOptionIdPath"], "$.orders[*].id");
        assert_eq!(orders["selectViewOptionNamePath"], "$.orders[*].label");
    }

    #[test]
    fn flow_manifest_lists_the_people_changed_element_with_sync_from_people() {
        let m = manifest(&example(), Some(Product::Flow), "https://x");
        let entry = m["functions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == "people-changed")
            .unwrap();
        assert_eq!(entry["uri"], "https://x/sync/people-changed");
        assert_eq!(entry["inSchema"]["required"], json!(["identifier"]));
        assert!(m["actions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["name"] == "people-changed"));
        let mut without = example();
        if let Some(sync) = without.sync.as_mut() {
            sync.from_people = None;
        }
        let m = manifest(&without, Some(Product::Flow), "https://x");
        assert!(!m["functions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["name"] == "people-changed"));
    }

    #[test]
    fn conversations_manifest_is_a_card() {
        let m = manifest(&example(), None, "https://x");
        assert_eq!(m["card"]["src"], "https://x/card");
        assert_eq!(m["card"]["size"], "STANDARD");
    }
}
