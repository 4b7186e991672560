//! Reading and checking a definition file. Every mistake is reported with the function and field it concerns, so
//! a partner fixes a broken definition from the start-up message alone.

use super::template::{Source, Template, TemplateError};
use super::*;
use std::collections::HashSet;

#[derive(Debug, thiserror::Error)]
pub enum DefinitionError {
    #[error("cannot read app definition {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("app definition is not valid TOML: {0}")]
    Syntax(String),
    #[error("app definition, {place}: {message}")]
    Invalid { place: String, message: String },
}

/// Settings fields an app may declare (People sync's own included).
pub const MAX_SETTINGS: usize = 1000;

fn invalid(place: impl Into<String>, message: impl Into<String>) -> DefinitionError {
    DefinitionError::Invalid {
        place: place.into(),
        message: message.into(),
    }
}

impl AppDefinition {
    pub fn from_file(path: &std::path::Path) -> Result<Self, DefinitionError> {
        let text = std::fs::read_to_string(path).map_err(|source| DefinitionError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml(&text)
    }

    pub fn from_toml(text: &str) -> Result<Self, DefinitionError> {
        let mut definition: AppDefinition =
            toml::from_str(text).map_err(|e| DefinitionError::Syntax(e.to_string()))?;
        if let Some(sync) = &definition.sync {
            // The People connection and the account's sync choices are settings like any other: validated,
            // stored (the key encrypted), and shown on the configuration page. Added before the checks, so a
            // partner's own setting of the same key is reported as a duplicate.
            let added = sync::people_settings(sync);
            definition.settings.extend(added);
        }
        definition.check()?;
        Ok(definition)
    }

    fn check(&self) -> Result<(), DefinitionError> {
        if self.app.name.trim().is_empty() {
            return Err(invalid("[app] name", "must not be empty"));
        }
        self.check_settings()?;
        self.check_partner()?;
        let mut names = HashSet::new();
        for function in &self.functions {
            let place = format!("function `{}`", function.name);
            if !is_identifier(&function.name, true) {
                return Err(invalid(
                    place,
                    "name must be lower-case letters, digits, `-` or `_`, as it becomes part of the URI",
                ));
            }
            if !names.insert(function.name.as_str()) {
                return Err(invalid(place, "defined twice"));
            }
            self.check_function(function, &place)?;
        }
        if let Some(card) = &self.card {
            self.check_card(card)?;
        }
        if let Some(sync) = &self.sync {
            self.check_sync(sync)?;
        }
        Ok(())
    }

    /// `[sync]`: a list function with an array output, one way of paging, and a mapping that names items of
    /// that output, writes known person fields, and includes the identifier records are matched by.
    fn check_sync(&self, sync: &sync::SyncSpec) -> Result<(), DefinitionError> {
        let to = &sync.to_people;
        let place = "[sync.to_people]";
        let f = self
            .functions
            .iter()
            .find(|f| f.name == to.function)
            .ok_or_else(|| {
                invalid(
                    place,
                    format!("`{}` is not a function of this app", to.function),
                )
            })?;
        let array = f
            .outputs
            .iter()
            .find(|o| o.name == to.output && o.kind == ValueType::Array)
            .ok_or_else(|| {
                invalid(
                    place,
                    format!("`{}` has no array output `{}`", f.name, to.output),
                )
            })?;
        let has_input = |name: &str| f.inputs.iter().any(|i| i.name == name);
        match (&to.page_input, &to.cursor_input, &to.cursor_output) {
            (Some(page), None, None) if has_input(page) => {}
            (Some(page), None, None) => {
                return Err(invalid(
                    place,
                    format!("`{}` has no input `{page}` (page_input)", f.name),
                ))
            }
            (None, Some(input), Some(output)) => {
                if !has_input(input) {
                    return Err(invalid(
                        place,
                        format!("`{}` has no input `{input}` (cursor_input)", f.name),
                    ));
                }
                if !f
                    .outputs
                    .iter()
                    .any(|o| o.name == *output && o.kind != ValueType::Array)
                {
                    return Err(invalid(
                        place,
                        format!(
                            "`{}` has no single-value output `{output}` (cursor_output)",
                            f.name
                        ),
                    ));
                }
            }
            (None, None, None) => {}
            _ => {
                return Err(invalid(
                    place,
                    "page with `page_input`, or with `cursor_input` and `cursor_output`, not both",
                ))
            }
        }
        if let Some(total) = &to.total_output {
            if !f
                .outputs
                .iter()
                .any(|o| o.name == *total && o.kind != ValueType::Array)
            {
                return Err(invalid(
                    place,
                    format!(
                        "`{}` has no single-value output `{total}` (total_output)",
                        f.name
                    ),
                ));
            }
        }
        let paging = [to.page_input.as_ref(), to.cursor_input.as_ref()];
        if let Some(input) = f
            .inputs
            .iter()
            .find(|i| i.required && !paging.contains(&Some(&i.name)))
        {
            return Err(invalid(
                place,
                format!(
                    "`{}` requires input `{}`, which a sync cannot give",
                    f.name, input.name
                ),
            ));
        }
        if to.fields.is_empty() {
            return Err(invalid(place, "fields: map at least the identifier"));
        }
        for (i, field) in to.fields.iter().enumerate() {
            let place = format!("[sync.to_people] fields[{i}]");
            if !sync::is_person_field(&field.person) {
                return Err(invalid(
                    place,
                    format!(
                        "`{}` is not a person field; use one of {} or customAttributes.NAME",
                        field.person,
                        sync::PERSON_FIELDS.join(", ")
                    ),
                ));
            }
            match (&field.item, &field.value) {
                (Some(item), None) => {
                    if !array.items.iter().any(|i| i.name == *item) {
                        return Err(invalid(
                            place,
                            format!("output `{}` has no item `{item}`", to.output),
                        ));
                    }
                }
                (None, Some(_)) => {}
                _ => return Err(invalid(place, "give one of `item` or `value`")),
            }
        }
        let identifier = sync.identifier.field();
        if !to.fields.iter().any(|f| f.person == identifier) {
            return Err(invalid(
                place,
                format!(
                    "records are matched by {} (identifier), so fields must map `{identifier}`",
                    sync.identifier.as_str()
                ),
            ));
        }
        if let Some(from) = &sync.from_people {
            self.check_from_people(sync, from)?;
        }
        if let Some(region) = &sync.default_region {
            if region.len() != 2 || !region.bytes().all(|b| b.is_ascii_uppercase()) {
                return Err(invalid(
                    "[sync] default_region",
                    format!("`{region}` is not a two-letter region code such as HR"),
                ));
            }
        }
        if let Some(tag) = &sync.delete_tag {
            if sync.on_delete != sync::OnDelete::Tag {
                return Err(invalid(
                    "[sync] delete_tag",
                    "a tag is added only with on_delete = \"tag\"",
                ));
            }
            let tag = tag.trim();
            if tag.is_empty()
                || tag.chars().count() > sync::MAX_TAG_CHARS
                || tag.chars().any(char::is_control)
            {
                return Err(invalid(
                    "[sync] delete_tag",
                    format!(
                        "give a tag of 1 to {} characters without control characters",
                        sync::MAX_TAG_CHARS
                    ),
                ));
            }
        }
        Ok(())
    }

    /// `[sync.from_people]`: a function that exists, inputs it has, person fields that exist, every required
    /// input given, and the identifier among them (or the partner could not tell which record to write).
    fn check_from_people(
        &self,
        sync: &sync::SyncSpec,
        from: &sync::FromPeople,
    ) -> Result<(), DefinitionError> {
        let place = "[sync.from_people]";
        if self.functions.iter().any(|f| f.name == "people-changed") {
            return Err(invalid(
                place,
                "the Flow element `people-changed` is ibex's own with [sync.from_people]; rename that function",
            ));
        }
        let f = self
            .functions
            .iter()
            .find(|f| f.name == from.function)
            .ok_or_else(|| {
                invalid(
                    place,
                    format!("`{}` is not a function of this app", from.function),
                )
            })?;
        for (i, field) in from.fields.iter().enumerate() {
            let place = format!("[sync.from_people] fields[{i}]");
            if !f.inputs.iter().any(|input| input.name == field.input) {
                return Err(invalid(
                    place,
                    format!("`{}` has no input `{}`", f.name, field.input),
                ));
            }
            if !sync::is_person_field(&field.person) {
                return Err(invalid(
                    place,
                    format!(
                        "`{}` is not a person field; use one of {} or customAttributes.NAME",
                        field.person,
                        sync::PERSON_FIELDS.join(", ")
                    ),
                ));
            }
        }
        if let Some(input) = f
            .inputs
            .iter()
            .find(|i| i.required && !from.fields.iter().any(|m| m.input == i.name))
        {
            return Err(invalid(
                place,
                format!(
                    "`{}` requires input `{}`; map a person field to it",
                    f.name, input.name
                ),
            ));
        }
        let identifier = sync.identifier.field();
        if !from.fields.iter().any(|m| m.person == identifier) {
            return Err(invalid(
                place,
                format!(
                    "records are matched by {} (identifier), so fields must give `{identifier}` to an input",
                    sync.identifier.as_str()
                ),
            ));
        }
        Ok(())
    }

    /// `[card]`: functions that exist, inputs they have, templates over the conversation's variables and the
    /// lookup's outputs only, and a list that names an array output and its items.
    fn check_card(&self, card: &CardSpec) -> Result<(), DefinitionError> {
        let function = |place: &str, name: &str| {
            self.functions
                .iter()
                .find(|f| f.name == name)
                .ok_or_else(|| invalid(place, format!("`{name}` is not a function of this app")))
        };
        let no_items: HashSet<&str> = HashSet::new();
        let scoped = |place: &str,
                      text: &str,
                      lookup: Option<&HashSet<&str>>,
                      items: &HashSet<&str>,
                      results: &HashSet<&str>| {
            let parsed = Template::parse(text).map_err(|e| invalid(place, e.to_string()))?;
            for source in parsed.sources() {
                match source {
                    Source::Conversation(name) if !CONVERSATION_VARIABLES.contains(&name.as_str()) => {
                        return Err(invalid(
                            place,
                            format!(
                                "`{{{{{source}}}}}` is not a conversation variable; use one of: {}",
                                CONVERSATION_VARIABLES.join(", ")
                            ),
                        ))
                    }
                    Source::Conversation(_) => {}
                    Source::Lookup(name) if lookup.is_some_and(|l| l.contains(name.as_str())) => {}
                    Source::Lookup(_) if lookup.is_none() => {
                        return Err(invalid(
                            place,
                            format!("`{{{{{source}}}}}`: the lookup's outputs are not known yet here"),
                        ))
                    }
                    Source::Lookup(_) => {
                        return Err(invalid(
                            place,
                            format!("`{{{{{source}}}}}` is not an output of every lookup function"),
                        ))
                    }
                    Source::Item(name) if items.contains(name.as_str()) => {}
                    Source::Item(_) if items.is_empty() => {
                        return Err(invalid(
                            place,
                            format!("`{{{{{source}}}}}`: item.* belongs to the list's action only"),
                        ))
                    }
                    Source::Item(_) => {
                        return Err(invalid(
                            place,
                            format!("`{{{{{source}}}}}` is not an item of the list's output"),
                        ))
                    }
                    Source::Result(name) if results.contains(name.as_str()) => {}
                    Source::Result(_) if results.is_empty() => {
                        return Err(invalid(
                            place,
                            format!("`{{{{{source}}}}}`: result.* belongs to the action's `done` only"),
                        ))
                    }
                    Source::Result(_) => {
                        return Err(invalid(
                            place,
                            format!("`{{{{{source}}}}}` is not an output of the action's function"),
                        ))
                    }
                    _ => {
                        return Err(invalid(
                            place,
                            format!("`{{{{{source}}}}}`: a card template uses conversation.* and lookup.* only"),
                        ))
                    }
                }
            }
            Ok(())
        };
        let template = |place: &str, text: &str, lookup: Option<&HashSet<&str>>| {
            scoped(place, text, lookup, &no_items, &no_items)
        };
        if card.lookup.is_empty() {
            return Err(invalid("[card] lookup", "needs at least one lookup"));
        }
        let mut outputs: Option<HashSet<&str>> = None;
        let mut mapped: HashSet<&str> = HashSet::new();
        for (i, lookup) in card.lookup.iter().enumerate() {
            let place = format!("[card] lookup[{i}]");
            let f = function(&place, &lookup.function)?;
            match (lookup.when, lookup.channels.is_empty()) {
                (AddressKind::ChannelId, true) => {
                    return Err(invalid(
                        &place,
                        format!(
                            "when = \"channel_id\" needs `channels`, some of: {}",
                            OPAQUE_ID_CHANNELS.join(", ")
                        ),
                    ))
                }
                (AddressKind::ChannelId, false) => {}
                (_, false) => {
                    return Err(invalid(
                        &place,
                        "`channels` belongs to when = \"channel_id\" only",
                    ))
                }
                (_, true) => {}
            }
            for channel in &lookup.channels {
                if !OPAQUE_ID_CHANNELS.contains(&channel.as_str()) {
                    return Err(invalid(
                        &place,
                        format!(
                            "`{channel}` is not a channel whose end user has an id instead of an address; use one of: {}",
                            OPAQUE_ID_CHANNELS.join(", ")
                        ),
                    ));
                }
                if !mapped.insert(channel.as_str()) {
                    return Err(invalid(
                        &place,
                        format!("`{channel}` is named by an earlier lookup already"),
                    ));
                }
            }
            for (name, text) in &lookup.inputs {
                if !f.inputs.iter().any(|input| input.name == *name) {
                    return Err(invalid(
                        &place,
                        format!("`{}` has no input `{name}`", f.name),
                    ));
                }
                template(&format!("{place}, input `{name}`"), text, None)?;
            }
            let names: HashSet<&str> = f.outputs.iter().map(|o| o.name.as_str()).collect();
            outputs = Some(match outputs {
                None => names,
                Some(common) => common.intersection(&names).copied().collect(),
            });
        }
        let outputs = outputs.unwrap_or_default();
        template("[card] title", &card.title, Some(&outputs))?;
        for (i, field) in card.fields.iter().enumerate() {
            let place = format!("[card] fields[{i}]");
            template(&format!("{place} value"), &field.value, Some(&outputs))?;
            match (&field.format, &field.currency) {
                (ValueFormat::Money, None) => return Err(invalid(
                    place,
                    "format = \"money\" needs `currency` (a code such as \"EUR\" or a template)",
                )),
                (ValueFormat::Money, Some(currency)) => {
                    template(&format!("{place} currency"), currency, Some(&outputs))?
                }
                (_, Some(_)) => {
                    return Err(invalid(
                        place,
                        "`currency` belongs to format = \"money\" only",
                    ))
                }
                _ => {}
            }
        }
        if let Some(list) = &card.list {
            let f = function("[card.list] function", &list.function)?;
            for (name, text) in &list.inputs {
                if !f.inputs.iter().any(|input| input.name == *name) {
                    return Err(invalid(
                        "[card.list]",
                        format!("`{}` has no input `{name}`", f.name),
                    ));
                }
                template(&format!("[card.list] input `{name}`"), text, Some(&outputs))?;
            }
            let Some(array) = f
                .outputs
                .iter()
                .find(|o| o.name == list.output && o.kind == ValueType::Array)
            else {
                return Err(invalid(
                    "[card.list] output",
                    format!("`{}` has no array output `{}`", f.name, list.output),
                ));
            };
            let named = std::iter::once(&list.item_title)
                .chain(list.item_detail.iter())
                .chain(list.item_link.iter())
                .chain(list.values.iter().map(|v| &v.item))
                .chain(list.values.iter().filter_map(|v| v.currency_item.as_ref()));
            for item in named {
                if !array.items.iter().any(|i| i.name == *item) {
                    return Err(invalid(
                        "[card.list]",
                        format!("output `{}` has no item `{item}`", list.output),
                    ));
                }
            }
            if let Some(action) = &list.action {
                let place = "[card.list.action]";
                let f = function(place, &action.function)?;
                let items: HashSet<&str> = array.items.iter().map(|i| i.name.as_str()).collect();
                let results: HashSet<&str> = f.outputs.iter().map(|o| o.name.as_str()).collect();
                for name in action.inputs.keys().chain(action.ask.iter()) {
                    if !f.inputs.iter().any(|input| input.name == *name) {
                        return Err(invalid(
                            place,
                            format!("`{}` has no input `{name}`", f.name),
                        ));
                    }
                }
                if let Some(both) = action.ask.iter().find(|a| action.inputs.contains_key(*a)) {
                    return Err(invalid(
                        place,
                        format!("input `{both}` is both filled in (`inputs`) and asked (`ask`)"),
                    ));
                }
                if let Some(missing) = f.inputs.iter().find(|input| {
                    input.required
                        && !action.inputs.contains_key(&input.name)
                        && !action.ask.contains(&input.name)
                }) {
                    return Err(invalid(
                        place,
                        format!(
                            "required input `{}` is neither in `inputs` nor in `ask`",
                            missing.name
                        ),
                    ));
                }
                for (name, text) in &action.inputs {
                    scoped(
                        &format!("{place} input `{name}`"),
                        text,
                        Some(&outputs),
                        &items,
                        &no_items,
                    )?;
                }
                scoped(
                    &format!("{place} confirm"),
                    &action.confirm,
                    Some(&outputs),
                    &items,
                    &no_items,
                )?;
                scoped(
                    &format!("{place} done"),
                    &action.done,
                    Some(&outputs),
                    &items,
                    &results,
                )?;
            }
            for (i, value) in list.values.iter().enumerate() {
                let place = format!("[card.list] values[{i}]");
                let currencies = usize::from(value.currency.is_some())
                    + usize::from(value.currency_item.is_some());
                match (value.format, currencies) {
                    (ValueFormat::Money, 1) | (ValueFormat::Text, 0) => {}
                    (ValueFormat::Money, _) => {
                        return Err(invalid(
                            place,
                            "format = \"money\" needs one of `currency` or `currency_item`",
                        ))
                    }
                    (ValueFormat::Link, _) => {
                        return Err(invalid(place, "a row links with `item_link`, not a value"))
                    }
                    (_, 0) => {}
                    _ => {
                        return Err(invalid(
                            place,
                            "`currency` and `currency_item` belong to format = \"money\" only",
                        ))
                    }
                }
                if let Some(code) = &value.currency {
                    if !is_currency_code(code) {
                        return Err(invalid(
                            place,
                            format!("`{code}` is not a three-letter currency code such as EUR"),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    fn check_settings(&self) -> Result<(), DefinitionError> {
        // Their values, defaults and options included, become part of the partner's address.
        let destination = crate::settings::DestinationParts::of_definition(self);
        let unfit = |key: &str, text: &str| destination.unfit(key, text);
        if self.settings.len() > MAX_SETTINGS {
            return Err(invalid(
                "settings",
                format!(
                    "{} fields, at most {MAX_SETTINGS}: no admin fills in a form that long, and the settings cache \
                     numbers fields in 16 bits",
                    self.settings.len()
                ),
            ));
        }
        let mut keys = HashSet::new();
        for field in &self.settings {
            let place = format!("setting `{}`", field.key);
            if !is_identifier(&field.key, false) {
                return Err(invalid(
                    place,
                    "key must be lower-case letters, digits or `_`",
                ));
            }
            if !keys.insert(field.key.as_str()) {
                return Err(invalid(place, "defined twice"));
            }
            if field.kind == SettingType::Select && field.options.is_empty() {
                return Err(invalid(place, "a select needs `options`"));
            }
            if field.kind != SettingType::Select && !field.options.is_empty() {
                return Err(invalid(place, "`options` only applies to type \"select\""));
            }
            if field.kind == SettingType::Secret && field.default.is_some() {
                return Err(invalid(
                    place,
                    "a secret cannot have a default: it would sit in the definition in plain text",
                ));
            }
            if let (Some(min), Some(max)) = (field.min, field.max) {
                if min > max {
                    return Err(invalid(place, "`min` is greater than `max`"));
                }
            }
            if field.kind == SettingType::Secret && field.dev_default.is_some() {
                return Err(invalid(
                    place,
                    "a secret cannot have a dev_default: it would sit in the definition in plain text",
                ));
            }
            for (name, value) in [
                ("default", &field.default),
                ("dev_default", &field.dev_default),
            ] {
                if let Some(value) = value {
                    let text = match value {
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    crate::settings::parse_value(field, &text)
                        .map_err(|message| invalid(format!("{place}, {name}"), message))?;
                    if let Some(message) = unfit(&field.key, &text) {
                        return Err(invalid(format!("{place}, {name}"), message));
                    }
                }
            }
            for option in &field.options {
                if let Some(message) = unfit(&field.key, &option.value) {
                    return Err(invalid(
                        format!("{place}, option {:?}", option.value),
                        message,
                    ));
                }
            }
        }
        Ok(())
    }

    fn check_partner(&self) -> Result<(), DefinitionError> {
        let settings_only = |place: &str, text: &str| self.check_template(place, text, None);
        settings_only("[partner] base_url", &self.partner.base_url)?;
        if !crate::settings::fits_a_base_url(&self.partner.base_url) {
            return Err(invalid(
                "[partner] base_url",
                "must not contain `?` or `#`: each request's path is added after the base URL, so it would \
                 land in the query or the fragment; give query parameters in a request's `query`",
            ));
        }
        // `https:host` and `https:/host` are read as `https://host` by the URL parser ibex falls back on, but
        // `host_sources` would not see the host in them.
        let scheme = self.partner.base_url.to_ascii_lowercase();
        if ["http:", "https:"]
            .iter()
            .any(|s| scheme.starts_with(s) && !scheme[s.len()..].starts_with("//"))
        {
            return Err(invalid(
                "[partner] base_url",
                "write the scheme in full, with both slashes (`https://`)",
            ));
        }
        if self.partner.timeout_ms == 0 {
            return Err(invalid("[partner] timeout_ms", "must be greater than 0"));
        }
        match &self.partner.auth {
            None => {}
            Some(PartnerAuth::Header { name, value })
            | Some(PartnerAuth::Query { name, value }) => {
                if name.trim().is_empty() {
                    return Err(invalid("[partner.auth] name", "must not be empty"));
                }
                settings_only("[partner.auth] value", value)?;
            }
            Some(PartnerAuth::Bearer { token }) => settings_only("[partner.auth] token", token)?,
            Some(PartnerAuth::Basic { username, password }) => {
                settings_only("[partner.auth] username", username)?;
                settings_only("[partner.auth] password", password)?;
            }
        }
        let egress = &self.partner.egress;
        for (i, host) in egress.allow_hosts.iter().enumerate() {
            let name = host.strip_prefix("*.").unwrap_or(host);
            let valid = !name.is_empty()
                && name.len() <= 253
                && name.split('.').all(|label| {
                    !label.is_empty()
                        && label.len() <= 63
                        && !label.starts_with('-')
                        && !label.ends_with('-')
                        && label
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                });
            if !valid || name.bytes().any(|b| b.is_ascii_uppercase()) {
                return Err(invalid(
                    format!("[partner.egress] allow_hosts[{i}]"),
                    format!(
                        "{host:?} is not a lower-case host name or `*.` followed by one (e.g. \"api.example.com\", \"*.example.com\")"
                    ),
                ));
            }
        }
        if egress.allow_private && egress.allow_hosts.is_empty() {
            return Err(invalid(
                "[partner.egress] allow_private",
                "needs `allow_hosts`: private addresses can be allowed only for named hosts",
            ));
        }
        if let Some(probe) = &self.partner.probe {
            self.check_request("[partner.probe]", probe, None)?;
        }
        Ok(())
    }

    fn check_function(&self, function: &Function, place: &str) -> Result<(), DefinitionError> {
        if function.products.is_empty() {
            return Err(invalid(
                format!("{place}, products"),
                "name at least one of \"answers\", \"flow\"",
            ));
        }
        if function.timeout_ms == Some(0) {
            return Err(invalid(
                format!("{place}, timeout_ms"),
                "must be greater than 0",
            ));
        }
        let mut inputs = HashSet::new();
        for input in &function.inputs {
            let at = format!("{place}, input `{}`", input.name);
            if !is_identifier(&input.name, false) {
                return Err(invalid(
                    at,
                    "name must be lower-case letters, digits or `_`",
                ));
            }
            if !inputs.insert(input.name.as_str()) {
                return Err(invalid(at, "defined twice"));
            }
            if input.kind == ValueType::Array {
                return Err(invalid(at, "inputs cannot be arrays"));
            }
            let location = input.location(function.method);
            if location == InputLocation::Body && function.method == Method::Get {
                return Err(invalid(
                    at,
                    "a GET request has no body: put it `in = \"query\"` or `\"path\"`",
                ));
            }
            if location == InputLocation::Path && !input.required {
                return Err(invalid(at, "a path input must be `required = true`"));
            }
            match (&input.view, &input.options_from) {
                (View::Select, None) => {
                    return Err(invalid(
                        at,
                        "a `view = \"select\"` needs `options_from` naming a function",
                    ))
                }
                (View::Text, Some(_)) => {
                    return Err(invalid(at, "`options_from` needs `view = \"select\"`"))
                }
                (View::Select, Some(source)) => self.check_options_source(&at, source)?,
                (View::Text, None) => {}
            }
        }
        self.check_request(
            &format!("{place}, request"),
            &function.request,
            Some(&inputs),
        )?;
        let mut outputs = HashSet::new();
        for output in &function.outputs {
            let at = format!("{place}, output `{}`", output.name);
            if !outputs.insert(output.name.as_str()) {
                return Err(invalid(at, "defined twice"));
            }
            check_output(output, &at)?;
        }
        Ok(())
    }

    fn check_options_source(&self, place: &str, source: &str) -> Result<(), DefinitionError> {
        let Some(function) = self.function(source) else {
            return Err(invalid(
                place,
                format!("`options_from` names `{source}`, which is not a function"),
            ));
        };
        if !function.outputs.iter().any(|o| o.select.is_some()) {
            return Err(invalid(
                place,
                format!("function `{source}` has no array output with `select`, so it cannot fill a SelectView"),
            ));
        }
        Ok(())
    }

    fn check_request(
        &self,
        place: &str,
        request: &RequestSpec,
        inputs: Option<&HashSet<&str>>,
    ) -> Result<(), DefinitionError> {
        if !request.path.starts_with('/') {
            return Err(invalid(format!("{place} path"), "must start with `/`"));
        }
        self.check_template(&format!("{place} path"), &request.path, inputs)?;
        for (name, value) in &request.query {
            self.check_template(&format!("{place} query `{name}`"), value, inputs)?;
        }
        for (name, value) in &request.headers {
            if http_header_name_invalid(name) {
                return Err(invalid(
                    format!("{place} header `{name}`"),
                    "is not a valid header name",
                ));
            }
            self.check_template(&format!("{place} header `{name}`"), value, inputs)?;
        }
        if let Some(body) = &request.body {
            if request.method == Method::Get {
                return Err(invalid(
                    format!("{place} body"),
                    "a GET request cannot carry a body",
                ));
            }
            self.check_body(&format!("{place} body"), body, inputs)?;
        }
        Ok(())
    }

    fn check_body(
        &self,
        place: &str,
        body: &serde_json::Value,
        inputs: Option<&HashSet<&str>>,
    ) -> Result<(), DefinitionError> {
        match body {
            serde_json::Value::String(text) => self.check_template(place, text, inputs),
            serde_json::Value::Array(items) => items
                .iter()
                .try_for_each(|v| self.check_body(place, v, inputs)),
            serde_json::Value::Object(map) => map
                .iter()
                .try_for_each(|(k, v)| self.check_body(&format!("{place}.{k}"), v, inputs)),
            _ => Ok(()),
        }
    }

    /// `inputs` is `None` where only settings make sense (base URL, auth, probe).
    fn check_template(
        &self,
        place: &str,
        text: &str,
        inputs: Option<&HashSet<&str>>,
    ) -> Result<(), DefinitionError> {
        let template =
            Template::parse(text).map_err(|e: TemplateError| invalid(place, e.to_string()))?;
        for source in template.sources() {
            match source {
                Source::Setting(key) if self.setting(key).is_none() => {
                    return Err(invalid(
                        place,
                        format!("`{{{{{source}}}}}` names no setting"),
                    ))
                }
                Source::Input(_) if inputs.is_none() => {
                    return Err(invalid(
                        place,
                        format!("`{{{{{source}}}}}`: only settings can be used here"),
                    ))
                }
                Source::Input(name) if !inputs.is_some_and(|i| i.contains(name.as_str())) => {
                    return Err(invalid(
                        place,
                        format!("`{{{{{source}}}}}` names no input of this function"),
                    ))
                }
                Source::Conversation(_)
                | Source::Lookup(_)
                | Source::Item(_)
                | Source::Result(_) => {
                    return Err(invalid(
                        place,
                        format!(
                        "`{{{{{source}}}}}`: conversation and lookup values belong in [card] only"
                    ),
                    ))
                }
                _ => {}
            }
        }
        Ok(())
    }
}

fn check_output(output: &Output, place: &str) -> Result<(), DefinitionError> {
    if output.kind == ValueType::Array {
        let Some(path) = &output.path else {
            return Err(invalid(
                place,
                "an array output needs `path`, a JSONPath such as \"$.items[*]\"",
            ));
        };
        serde_json_path::JsonPath::parse(path)
            .map_err(|e| invalid(place, format!("`path` is not a valid JSONPath: {e}")))?;
        let mut names = HashSet::new();
        for item in &output.items {
            let at = format!("{place}, item `{}`", item.name);
            if !names.insert(item.name.as_str()) {
                return Err(invalid(at, "defined twice"));
            }
            if item.kind == ValueType::Array {
                return Err(invalid(at, "nested arrays are not supported"));
            }
            check_output(item, &at)?;
        }
        if let Some(select) = &output.select {
            for field in [&select.id, &select.name] {
                if !names.contains(field.as_str()) {
                    return Err(invalid(
                        place,
                        format!("`select` names `{field}`, which is not an item"),
                    ));
                }
            }
        }
    } else {
        if output.select.is_some() || !output.items.is_empty() || output.path.is_some() {
            return Err(invalid(
                place,
                "`path`, `items` and `select` only apply to arrays",
            ));
        }
        match &output.pointer {
            Some(p) if p.is_empty() || p.starts_with('/') => {}
            Some(_) => {
                return Err(invalid(
                    place,
                    "`pointer` is a JSON pointer and starts with `/`",
                ))
            }
            None => return Err(invalid(place, "needs `pointer`, e.g. \"/status\"")),
        }
    }
    Ok(())
}

/// ISO 4217 codes are three upper-case letters; which ones exist is the partner's business.
fn is_currency_code(code: &str) -> bool {
    code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase())
}

fn is_identifier(name: &str, allow_dash: bool) -> bool {
    !name.is_empty()
        && name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name.chars().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || (allow_dash && c == '-')
        })
}

fn http_header_name_invalid(name: &str) -> bool {
    name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_function(function: &str) -> String {
        format!(
            r#"
[app]
name = "T"
[[settings]]
key = "api_key"
label = "Key"
type = "secret"
[partner]
base_url = "http://x"
{function}"#
        )
    }

    fn error_of(text: &str) -> String {
        AppDefinition::from_toml(text).unwrap_err().to_string()
    }

    #[test]
    fn too_many_settings_are_refused() {
        let many: String = (0..=MAX_SETTINGS)
            .map(|i| format!("[[settings]]\nkey = \"s{i}\"\nlabel = \"S\"\ntype = \"text\"\n"))
            .collect();
        let text = with_function("").replacen("[[settings]]", &format!("{many}[[settings]]"), 1);
        let e = error_of(&text);
        assert!(e.contains("settings") && e.contains("at most 1000"), "{e}");
    }

    #[test]
    fn bundled_example_loads() {
        let def = AppDefinition::from_toml(BUNDLED_EXAMPLE).unwrap();
        assert!(def.functions.len() >= 3);
    }

    #[test]
    fn unknown_input_in_request_names_function_and_field() {
        let e = error_of(&with_function(
            r#"[[functions]]
name = "f"
products = ["answers"]
[functions.request]
method = "GET"
path = "/x/{{inputs.nope}}"
"#,
        ));
        assert!(e.contains("function `f`"), "{e}");
        assert!(e.contains("inputs.nope"), "{e}");
    }

    #[test]
    fn unknown_setting_is_named() {
        let e = error_of(&with_function(
            r#"[[functions]]
name = "f"
products = ["answers"]
[functions.request]
method = "GET"
path = "/x"
headers = { "X-Key" = "{{settings.missing}}" }
"#,
        ));
        assert!(
            e.contains("header `X-Key`") && e.contains("settings.missing"),
            "{e}"
        );
    }

    #[test]
    fn output_without_pointer_is_named() {
        let e = error_of(&with_function(
            r#"[[functions]]
name = "f"
products = ["answers"]
[functions.request]
method = "GET"
path = "/x"
[[functions.outputs]]
name = "status"
"#,
        ));
        assert!(
            e.contains("output `status`") && e.contains("pointer"),
            "{e}"
        );
    }

    #[test]
    fn unknown_field_is_a_syntax_error() {
        let e = error_of(&with_function(
            r#"[[functions]]
name = "f"
products = ["answers"]
colour = "red"
[functions.request]
method = "GET"
path = "/x"
"#,
        ));
        assert!(e.contains("colour"), "{e}");
    }

    #[test]
    fn body_input_on_get_is_refused() {
        let e = error_of(&with_function(
            r#"[[functions]]
name = "f"
method = "GET"
products = ["answers"]
[[functions.inputs]]
name = "email"
in = "body"
[functions.request]
method = "GET"
path = "/x"
"#,
        ));
        assert!(e.contains("input `email`") && e.contains("GET"), "{e}");
    }

    #[test]
    fn a_base_url_takes_no_query_or_fragment() {
        for base in [
            "http://x/v1?tenant=7",
            "http://x/v1#",
            "{{settings.api_key}}#",
        ] {
            let text = with_function("")
                .replace("base_url = \"http://x\"", &format!("base_url = \"{base}\""));
            let e = error_of(&text);
            assert!(
                e.contains("[partner] base_url") && e.contains('?'),
                "{base}: {e}"
            );
        }
        // Nor may the default or an option of a setting it uses.
        let with_base_setting = |field: &str| {
            with_function("")
                .replace(
                    "base_url = \"http://x\"",
                    "base_url = \"{{settings.base}}\"",
                )
                .replacen(
                    "[[settings]]",
                    &format!(
                        "[[settings]]\nkey = \"base\"\nlabel = \"Base\"\n{field}\n[[settings]]"
                    ),
                    1,
                )
        };
        for field in [
            "type = \"url\"\ndefault = \"https://x.example/v1?t=1\"",
            "type = \"url\"\ndev_default = \"http://localhost:1/#\"",
            "type = \"select\"\noptions = [{ value = \"https://eu.x.example\", label = \"EU\" }, { value = \"https://x.example/#us\", label = \"US\" }]",
        ] {
            let e = error_of(&with_base_setting(field));
            assert!(e.contains("setting `base`") && e.contains("`?` or `#`"), "{field}: {e}");
        }
        let fine = with_base_setting("type = \"url\"\ndefault = \"https://x.example/v1\"");
        assert!(AppDefinition::from_toml(&fine).is_ok());
    }

    #[test]
    fn a_setting_standing_in_the_host_name_has_host_name_defaults_and_options() {
        let with_tenant = |field: &str| {
            with_function("")
                .replace(
                    "base_url = \"http://x\"",
                    "base_url = \"https://{{settings.tenant}}.x.example/v1\"",
                )
                .replacen(
                    "[[settings]]",
                    &format!(
                        "[[settings]]\nkey = \"tenant\"\nlabel = \"Tenant\"\n{field}\n[[settings]]"
                    ),
                    1,
                )
        };
        for field in [
            "type = \"text\"\ndefault = \"evil.example/\"",
            "type = \"text\"\ndev_default = \"user@evil.example\"",
            "type = \"select\"\noptions = [{ value = \"eu\", label = \"EU\" }, { value = \"evil.example/x\", label = \"US\" }]",
        ] {
            let e = error_of(&with_tenant(field));
            assert!(e.contains("setting `tenant`") && e.contains("host name"), "{field}: {e}");
        }
        for base in [
            "https:{{settings.tenant}}.x.example",
            "HTTP:/{{settings.tenant}}.x.example",
        ] {
            let e = error_of(
                &with_tenant("type = \"text\"")
                    .replace("https://{{settings.tenant}}.x.example/v1", base),
            );
            assert!(
                e.contains("[partner] base_url") && e.contains("both slashes"),
                "{base}: {e}"
            );
        }
        let fine = with_tenant("type = \"select\"\noptions = [{ value = \"eu\", label = \"EU\" }, { value = \"us-1\", label = \"US\" }]");
        assert!(AppDefinition::from_toml(&fine).is_ok());
    }

    #[test]
    fn egress_hosts_are_checked_and_named() {
        let base = |egress: &str| {
            format!("[app]\nname = \"T\"\n[partner]\nbase_url = \"https://x.example\"\n[partner.egress]\n{egress}\n")
        };
        let ok = AppDefinition::from_toml(&base(
            "allow_hosts = [\"api.shop.example\", \"*.shop.example\"]\nallow_private = true\nhttps_only = true",
        ))
        .unwrap();
        assert_eq!(ok.partner.egress.allow_hosts.len(), 2);
        for bad in [
            "*",
            "*.",
            "a..b",
            "evil.example/",
            "10.0.0.1:80",
            "API.example",
            "-a.example",
            "a b",
        ] {
            let e = error_of(&base(&format!("allow_hosts = [{bad:?}]")));
            assert!(
                e.contains("[partner.egress] allow_hosts[0]") && e.contains(bad),
                "{bad}: {e}"
            );
        }
        let e = error_of(&base("allow_private = true"));
        assert!(
            e.contains("allow_private") && e.contains("allow_hosts"),
            "{e}"
        );
        assert!(error_of(&base("allow = []")).contains("allow"));
    }

    #[test]
    fn card_mistakes_are_named() {
        let card = |section: &str| {
            let base = BUNDLED_EXAMPLE
                .split("\n[card]")
                .next()
                .unwrap_or_default()
                .to_owned();
            error_of(&format!("{base}\n{section}"))
        };
        let lookup = "[card]\ntitle = \"{{lookup.name}}\"\n[[card.lookup]]\nfunction = \"customer-lookup\"\n";
        for (section, expected) in [
            (
                "[card]\ntitle = \"x\"\nlookup = []".to_owned(),
                "needs at least one lookup",
            ),
            (
                format!("{lookup}inputs = {{ phone = \"{{{{conversation.phone}}}}\" }}"),
                "is not a conversation variable; use one of: conversationId",
            ),
            (
                format!("{lookup}inputs = {{ fax = \"{{{{conversation.customerNumber}}}}\" }}"),
                "has no input `fax`",
            ),
            (
                format!("{lookup}inputs = {{ phone = \"{{{{settings.api_key}}}}\" }}"),
                "uses conversation.* and lookup.* only",
            ),
            (
                format!(
                    "{lookup}inputs = {{ phone = \"{{{{conversation.customerNumber}}}}\" }}\n\
                     [[card.fields]]\nlabel = \"X\"\nvalue = \"{{{{lookup.nope}}}}\""
                ),
                "is not an output of every lookup function",
            ),
            (
                format!(
                    "{lookup}inputs = {{ phone = \"{{{{conversation.customerNumber}}}}\" }}\n\
                     [card.list]\ntitle = \"T\"\nfunction = \"recent-orders\"\noutput = \"orders\"\nitem_title = \"nope\""
                ),
                "has no item `nope`",
            ),
            (
                format!(
                    "{lookup}inputs = {{ phone = \"{{{{conversation.customerNumber}}}}\" }}\n\
                     [[card.fields]]\nlabel = \"X\"\nvalue = \"{{{{lookup.tier}}}}\"\nformat = \"money\""
                ),
                "needs `currency`",
            ),
            (
                format!(
                    "{lookup}inputs = {{ phone = \"{{{{conversation.customerNumber}}}}\" }}\n\
                     [[card.fields]]\nlabel = \"X\"\nvalue = \"{{{{lookup.tier}}}}\"\ncurrency = \"EUR\""
                ),
                "belongs to format = \"money\" only",
            ),
            (
                format!(
                    "{lookup}inputs = {{ phone = \"{{{{conversation.customerNumber}}}}\" }}\n\
                     [card.list]\ntitle = \"T\"\nfunction = \"recent-orders\"\noutput = \"orders\"\nitem_title = \"label\"\n\
                     [[card.list.values]]\nitem = \"total\"\nformat = \"money\"\ncurrency = \"euro\""
                ),
                "is not a three-letter currency code",
            ),
            (
                format!(
                    "{lookup}inputs = {{ phone = \"{{{{conversation.customerNumber}}}}\" }}\n\
                     [card.list]\ntitle = \"T\"\nfunction = \"recent-orders\"\noutput = \"orders\"\nitem_title = \"label\"\n\
                     item_link = \"href\""
                ),
                "has no item `href`",
            ),
            (
                format!("{lookup}when = \"channel_id\"\ninputs = {{ phone = \"{{{{conversation.customerNumber}}}}\" }}"),
                "when = \"channel_id\" needs `channels`, some of: LIVE_CHAT",
            ),
            (
                format!("{lookup}when = \"phone\"\nchannels = [\"LIVE_CHAT\"]\ninputs = {{ phone = \"{{{{conversation.customerNumber}}}}\" }}"),
                "`channels` belongs to when = \"channel_id\" only",
            ),
            (
                format!("{lookup}when = \"channel_id\"\nchannels = [\"SMS\"]\ninputs = {{ phone = \"{{{{conversation.customerNumber}}}}\" }}"),
                "`SMS` is not a channel whose end user has an id instead of an address",
            ),
            (
                format!(
                    "{lookup}when = \"channel_id\"\nchannels = [\"LIVE_CHAT\"]\ninputs = {{ phone = \"{{{{conversation.customerNumber}}}}\" }}\n\
                     [[card.lookup]]\nfunction = \"customer-lookup\"\nwhen = \"channel_id\"\nchannels = [\"TWITTER_DM\", \"LIVE_CHAT\"]\n\
                     inputs = {{ email = \"{{{{conversation.customerNumber}}}}\" }}"
                ),
                "`LIVE_CHAT` is named by an earlier lookup already",
            ),
        ] {
            let e = card(&section);
            assert!(e.contains(expected), "{section}\n=> {e}");
        }
        // A channel's id mapped to a lookup input loads.
        let base = BUNDLED_EXAMPLE.split("\n[card]").next().unwrap_or_default();
        let mapped = format!(
            "{base}\n{lookup}when = \"channel_id\"\nchannels = [\"LIVE_CHAT\", \"INTERNAL\"]\n\
             inputs = {{ phone = \"{{{{conversation.customerNumber}}}}\" }}"
        );
        let definition = AppDefinition::from_toml(&mapped).unwrap();
        let card = definition.card.unwrap();
        assert_eq!(card.lookup[0].when, AddressKind::ChannelId);
        assert_eq!(card.lookup[0].channels, ["LIVE_CHAT", "INTERNAL"]);
    }

    #[test]
    fn sync_mistakes_are_named() {
        let sync = |section: &str| {
            let base = BUNDLED_EXAMPLE
                .split("\n[sync]")
                .next()
                .unwrap_or_default()
                .to_owned();
            error_of(&format!("{base}\n{section}"))
        };
        let head =
            "[sync]\n[sync.to_people]\nfunction = \"list-customers\"\noutput = \"customers\"\n";
        let id = "[[sync.to_people.fields]]\nperson = \"externalId\"\nitem = \"id\"\n";
        for (section, expected) in [
            (
                "[sync]\n[sync.to_people]\nfunction = \"nope\"\noutput = \"x\"\nfields = []".to_owned(),
                "`nope` is not a function of this app",
            ),
            (format!("{head}page_input = \"p\"\n{id}"), "has no input `p` (page_input)"),
            (
                format!("{head}page_input = \"page\"\ncursor_input = \"page\"\n{id}"),
                "not both",
            ),
            (format!("{head}fields = []"), "map at least the identifier"),
            (
                format!("{head}[[sync.to_people.fields]]\nperson = \"nickname\"\nitem = \"id\"\n"),
                "`nickname` is not a person field",
            ),
            (
                format!("{head}[[sync.to_people.fields]]\nperson = \"externalId\"\nitem = \"uid\"\n"),
                "has no item `uid`",
            ),
            (
                format!("{head}[[sync.to_people.fields]]\nperson = \"firstName\"\nitem = \"name\"\n"),
                "fields must map `externalId`",
            ),
            (
                format!("{head}[[sync.to_people.fields]]\nperson = \"externalId\"\nitem = \"id\"\nvalue = \"x\"\n"),
                "give one of `item` or `value`",
            ),
            (
                format!("{head}{id}[sync.from_people]\nfunction = \"nope\"\nfields = []\n"),
                "[sync.from_people]: `nope` is not a function of this app",
            ),
            (
                format!("{head}{id}[sync.from_people]\nfunction = \"update-customer\"\n[[sync.from_people.fields]]\ninput = \"nick\"\nperson = \"externalId\"\n"),
                "fields[0]: `update-customer` has no input `nick`",
            ),
            (
                format!("{head}{id}[sync.from_people]\nfunction = \"update-customer\"\n[[sync.from_people.fields]]\ninput = \"customer_id\"\nperson = \"nickname\"\n"),
                "`nickname` is not a person field",
            ),
            (
                format!("{head}{id}[sync.from_people]\nfunction = \"update-customer\"\n[[sync.from_people.fields]]\ninput = \"email\"\nperson = \"email\"\n"),
                "`update-customer` requires input `customer_id`",
            ),
            (
                format!("{head}{id}[sync.from_people]\nfunction = \"update-customer\"\n[[sync.from_people.fields]]\ninput = \"customer_id\"\nperson = \"email\"\n"),
                "fields must give `externalId` to an input",
            ),
            (
                format!("[sync]\ndefault_region = \"hr\"\n[sync.to_people]\nfunction = \"list-customers\"\noutput = \"customers\"\n{id}"),
                "not a two-letter region code",
            ),
            (
                format!("[sync]\non_delete = \"purge\"\n[sync.to_people]\nfunction = \"list-customers\"\noutput = \"customers\"\n{id}"),
                "unknown variant `purge`, expected one of `ignore`, `tag`, `delete`",
            ),
            (
                format!("[sync]\ndelete_tag = \"gone\"\n[sync.to_people]\nfunction = \"list-customers\"\noutput = \"customers\"\n{id}"),
                "[sync] delete_tag: a tag is added only with on_delete = \"tag\"",
            ),
            (
                format!("[sync]\non_delete = \"tag\"\ndelete_tag = \" \"\n[sync.to_people]\nfunction = \"list-customers\"\noutput = \"customers\"\n{id}"),
                "[sync] delete_tag: give a tag of 1 to 128 characters",
            ),
        ] {
            let e = sync(&section);
            assert!(e.contains(expected), "{section}\n=> {e}");
        }
    }
}
