//! Sorting and paging (search page, "Sorting" and "Paging"): `_sort`, and the keyset cursors of
//! paging links, which carry the sort key values and row key of the hit a page ends (starts) at,
//! so that links stay correct while others write and no result set is kept on the server.

use crate::error::FhirError;
use crate::search::definitions::Registry;
use crate::search::param;
use crate::search::query::{
    Contained, Cursor, KeyKind, KeyValue, SearchQuery, SortColumn, SortKey,
};

/// Keyset cursors of paging links (opaque to clients).
pub const CURSOR_AFTER: &str = "_cursor_after";
pub const CURSOR_BEFORE: &str = "_cursor_before";

/// The most sort keys one search may have.
const MAX_SORT_KEYS: usize = 8;

/// `_sort=a,-b`: sort keys in order, `-` for descending.
pub fn keys(registry: &Registry, rtype: &str, value: &str) -> Result<Vec<SortKey>, FhirError> {
    let mut keys = Vec::new();
    for item in value.split(',') {
        let (descending, code) = match item.strip_prefix('-') {
            Some(code) => (true, code),
            None => (false, item),
        };
        let column = match code {
            "_id" => SortColumn::Id,
            "_lastUpdated" => SortColumn::LastUpdated,
            _ => {
                let table = registry
                    .get(rtype, code)
                    .and_then(|p| param::table(p.kind))
                    .ok_or_else(|| {
                        FhirError::invalid(format!(
                            "_sort: '{code}' is not a sortable search parameter of {rtype}"
                        ))
                    })?;
                SortColumn::Index {
                    table,
                    param: code.to_owned(),
                }
            }
        };
        keys.push(SortKey { column, descending });
    }
    if keys.len() > MAX_SORT_KEYS {
        return Err(FhirError::invalid("_sort takes at most 8 keys"));
    }
    Ok(keys)
}

/// Sets the cursor `text` of a paging link on the query it was made for (`after`: the next
/// page; else the previous one), once its sort keys are known.
pub fn page_from(query: &mut SearchQuery, after: bool, text: &str) -> Result<(), FhirError> {
    let decoded = Cursor::decode(text, &query.sort)
        // A search of contained resources has one key more: the hit's contained position.
        .filter(|c| {
            let extra = usize::from(query.contained != Contained::False);
            c.keys.len() == query.sort.len() + extra
        })
        .ok_or_else(|| FhirError::invalid("The paging cursor does not fit this search"))?;
    if after {
        query.after = Some(decoded);
    } else {
        query.before = Some(decoded);
    }
    Ok(())
}

impl Cursor {
    /// The opaque text of a paging link: a JSON array of the key values and the row key.
    pub fn encode(&self) -> String {
        if self.keys.is_empty() {
            return self.rid.to_string();
        }
        let mut items: Vec<serde_json::Value> = self
            .keys
            .iter()
            .map(|k| match k {
                KeyValue::Null => serde_json::Value::Null,
                KeyValue::Text(s) => serde_json::Value::String(s.clone()),
                KeyValue::Int(i) => serde_json::Value::from(*i),
                KeyValue::Float(f) => serde_json::Value::String(f.to_string()),
            })
            .collect();
        items.push(serde_json::Value::from(self.rid));
        serde_json::Value::Array(items).to_string()
    }

    /// Reads a cursor made by `encode` for the same sort keys.
    pub fn decode(text: &str, sort: &[SortKey]) -> Option<Cursor> {
        if sort.is_empty() {
            if let Ok(rid) = text.parse() {
                return Some(Cursor {
                    keys: Vec::new(),
                    rid,
                });
            }
        }
        let items: Vec<serde_json::Value> = serde_json::from_str(text).ok()?;
        let (rid, keys) = items.split_last()?;
        // A search of contained resources has its hit's contained position as a last key.
        let (keys, contained) = match keys.len().checked_sub(sort.len())? {
            0 => (keys, None),
            1 => (
                &keys[..sort.len()],
                Some(KeyValue::Int(keys[sort.len()].as_i64()?)),
            ),
            _ => return None,
        };
        let keys = keys
            .iter()
            .zip(sort)
            .map(|(value, key)| match (value, key.kind()) {
                (serde_json::Value::Null, _) => Some(KeyValue::Null),
                (serde_json::Value::String(s), KeyKind::Text) => Some(KeyValue::Text(s.clone())),
                (serde_json::Value::String(s), KeyKind::Float) => {
                    s.parse().ok().map(KeyValue::Float)
                }
                (v, KeyKind::Int) => v.as_i64().map(KeyValue::Int),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()?;
        let mut keys = keys;
        keys.extend(contained);
        Some(Cursor {
            keys,
            rid: rid.as_i64()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::query::{IndexTable, HIT_CONTAINER};

    #[test]
    fn a_cursor_of_a_contained_search_carries_the_position_as_a_last_key() {
        let sort = [SortKey {
            column: SortColumn::LastUpdated,
            descending: true,
        }];
        let cursor = Cursor {
            keys: vec![KeyValue::Int(7), KeyValue::Int(2)],
            rid: 40,
        };
        assert_eq!(Cursor::decode(&cursor.encode(), &sort), Some(cursor));
        let unsorted = Cursor {
            keys: vec![KeyValue::Int(HIT_CONTAINER)],
            rid: 40,
        };
        assert_eq!(Cursor::decode(&unsorted.encode(), &[]), Some(unsorted));
        assert_eq!(Cursor::decode("[1, 2, 3, 40]", &sort), None);
    }

    #[test]
    fn sort_keys_are_parameters_in_order_minus_for_descending() {
        let keys = keys(&Registry::official(), "Observation", "-date,_id").unwrap();
        assert_eq!(
            keys,
            vec![
                SortKey {
                    column: SortColumn::Index {
                        table: IndexTable::Date,
                        param: "date".into()
                    },
                    descending: true
                },
                SortKey {
                    column: SortColumn::Id,
                    descending: false
                },
            ]
        );
        assert!(super::keys(&Registry::official(), "Observation", "no-such").is_err());
        assert!(super::keys(
            &Registry::official(),
            "Observation",
            "component-code-value-quantity"
        )
        .is_err());
        assert!(super::keys(&Registry::official(), "Observation", &["_id"; 9].join(",")).is_err());
    }

    #[test]
    fn a_cursor_must_fit_the_sort_of_the_search() {
        let mut query = SearchQuery {
            sort: keys(&Registry::official(), "Observation", "date").unwrap(),
            ..Default::default()
        };
        assert!(page_from(&mut query, true, "40").is_err());
        page_from(&mut query, false, "[5, 40]").unwrap();
        assert_eq!(query.before.map(|c| c.rid), Some(40));
    }
}
