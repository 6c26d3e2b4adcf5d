//! Reading an EMQX JSON user list (`[{"user_id": ..., ...}, ...]`) for `import_users`, one
//! element at a time.
//!
//! Owns the JSON side of [`super::import::parse`]: the list is walked with a streaming
//! `SeqAccess` visitor and each element read into a typed [`JsonRow`] of the fields a row
//! may have (anything else is skipped unread, without being kept), so a 64 MiB body of
//! tiny elements (`[0,0,0,...]`) or one huge element costs no more than the rows it yields,
//! and the walk stops as soon as the caller refuses (past `MAX_IMPORT_ROWS`). Field values
//! of the wrong type are recorded as such, never as serde's message, so no error made here
//! quotes a value of the file (a password, a hash).

use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Most entries of a row's `password_hash_algorithm` object (the largest, PBKDF2's, has 4).
const MAX_ALGORITHM_ENTRIES: usize = 8;

/// A field of a row as read: absent (or `null`), text, a boolean, or anything else.
#[derive(Debug, Default, PartialEq, Eq)]
pub enum Loose {
    /// Not there, or `null`.
    #[default]
    Absent,
    /// A string.
    Text(String),
    /// `true` / `false`.
    Bool(bool),
    /// A number, list or object (skipped, not kept).
    Other,
}

/// A row's own `password_hash_algorithm`: an object of scalars, kept for `Algorithm`'s
/// deserializer, or something that cannot be one.
#[derive(Debug, Default)]
pub enum AlgorithmField {
    /// Not there, or `null`.
    #[default]
    Absent,
    /// An object of at most [`MAX_ALGORITHM_ENTRIES`] scalar entries.
    Object(Map<String, Value>),
    /// Anything else (skipped, not kept).
    Invalid,
}

/// The fields of one list element that a row may use.
#[derive(Debug, Default)]
pub struct JsonRow {
    /// `user_id`.
    pub user_id: Loose,
    /// `password_hash` (`type=hash`).
    pub password_hash: Loose,
    /// `salt` (`type=hash`).
    pub salt: Loose,
    /// `password` (`type=plain`).
    pub password: Loose,
    /// `is_superuser`.
    pub is_superuser: Loose,
    /// `password_hash_algorithm` (`type=hash`).
    pub password_hash_algorithm: AlgorithmField,
}

/// One element of the list.
#[derive(Debug)]
pub enum Element {
    /// An object.
    Row(JsonRow),
    /// Not an object (skipped unread).
    NotObject,
}

/// Walks the list in `text`, calling `each(position from 1, element)` in order. `each`
/// returning `Err` stops the walk: that error is returned. Otherwise `Err` says the text is
/// not a JSON list (with the line and column, never serde's text).
pub fn read_list(
    text: &str,
    each: &mut dyn FnMut(usize, Element) -> Result<(), String>,
) -> Result<(), String> {
    let mut stopped = None;
    let mut de = serde_json::Deserializer::from_str(text);
    let walked = de
        .deserialize_seq(ListVisitor {
            each,
            stopped: &mut stopped,
        })
        .and_then(|()| de.end());
    if let Some(why) = stopped {
        return Err(why);
    }
    walked.map_err(|e| {
        format!(
            "the file is not a JSON list of users (line {}, column {})",
            e.line(),
            e.column()
        )
    })
}

struct ListVisitor<'a, 'b> {
    each: &'a mut dyn FnMut(usize, Element) -> Result<(), String>,
    stopped: &'b mut Option<String>,
}

impl<'de> Visitor<'de> for ListVisitor<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of users")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut at = 0usize;
        while let Some(element) = seq.next_element::<Element>()? {
            at += 1;
            if let Err(why) = (self.each)(at, element) {
                *self.stopped = Some(why);
                return Err(de::Error::custom("stopped"));
            }
        }
        Ok(())
    }
}

impl<'de> de::Deserialize<'de> for Element {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ElementVisitor)
    }
}

/// Accepts any JSON value: an object becomes a row, anything else is skipped.
struct ElementVisitor;

impl<'de> Visitor<'de> for ElementVisitor {
    type Value = Element;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a user object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Element, A::Error> {
        let mut row = JsonRow::default();
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::UserId => row.user_id = map.next_value()?,
                Key::PasswordHash => row.password_hash = map.next_value()?,
                Key::Salt => row.salt = map.next_value()?,
                Key::Password => row.password = map.next_value()?,
                Key::IsSuperuser => row.is_superuser = map.next_value()?,
                Key::Algorithm => row.password_hash_algorithm = map.next_value()?,
                Key::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Element::Row(row))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Element, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Element::NotObject)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Element, E> {
        Ok(Element::NotObject)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Element, E> {
        Ok(Element::NotObject)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Element, E> {
        Ok(Element::NotObject)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Element, E> {
        Ok(Element::NotObject)
    }
    fn visit_str<E>(self, _: &str) -> Result<Element, E> {
        Ok(Element::NotObject)
    }
    fn visit_unit<E>(self) -> Result<Element, E> {
        Ok(Element::NotObject)
    }
}

/// A row's key: one of the fields a row may use, or another (whose value is skipped).
enum Key {
    UserId,
    PasswordHash,
    Salt,
    Password,
    IsSuperuser,
    Algorithm,
    Other,
}

impl<'de> de::Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E>(self, k: &str) -> Result<Key, E> {
                Ok(match k {
                    "user_id" => Key::UserId,
                    "password_hash" => Key::PasswordHash,
                    "salt" => Key::Salt,
                    "password" => Key::Password,
                    "is_superuser" => Key::IsSuperuser,
                    "password_hash_algorithm" => Key::Algorithm,
                    _ => Key::Other,
                })
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

impl<'de> de::Deserialize<'de> for Loose {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(LooseVisitor)
    }
}

/// Accepts any JSON value, keeping only strings and booleans.
struct LooseVisitor;

impl<'de> Visitor<'de> for LooseVisitor {
    type Value = Loose;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any value")
    }
    fn visit_str<E>(self, s: &str) -> Result<Loose, E> {
        Ok(Loose::Text(s.to_owned()))
    }
    fn visit_string<E>(self, s: String) -> Result<Loose, E> {
        Ok(Loose::Text(s))
    }
    fn visit_bool<E>(self, b: bool) -> Result<Loose, E> {
        Ok(Loose::Bool(b))
    }
    fn visit_unit<E>(self) -> Result<Loose, E> {
        Ok(Loose::Absent)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Loose, E> {
        Ok(Loose::Other)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Loose, E> {
        Ok(Loose::Other)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Loose, E> {
        Ok(Loose::Other)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Loose, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Loose::Other)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Loose, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Loose::Other)
    }
}

impl<'de> de::Deserialize<'de> for AlgorithmField {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(AlgorithmVisitor)
    }
}

/// Keeps a small object of scalars; anything else is skipped as invalid.
struct AlgorithmVisitor;

impl<'de> Visitor<'de> for AlgorithmVisitor {
    type Value = AlgorithmField;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an algorithm object")
    }
    fn visit_unit<E>(self) -> Result<AlgorithmField, E> {
        Ok(AlgorithmField::Absent)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AlgorithmField, A::Error> {
        let mut kept = Map::new();
        let mut valid = true;
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value::<Scalar>()?;
            match value.0 {
                Some(v) if valid && kept.len() < MAX_ALGORITHM_ENTRIES => {
                    kept.insert(key, v);
                }
                _ => valid = false,
            }
        }
        Ok(if valid {
            AlgorithmField::Object(kept)
        } else {
            AlgorithmField::Invalid
        })
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<AlgorithmField, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(AlgorithmField::Invalid)
    }
    fn visit_bool<E>(self, _: bool) -> Result<AlgorithmField, E> {
        Ok(AlgorithmField::Invalid)
    }
    fn visit_i64<E>(self, _: i64) -> Result<AlgorithmField, E> {
        Ok(AlgorithmField::Invalid)
    }
    fn visit_u64<E>(self, _: u64) -> Result<AlgorithmField, E> {
        Ok(AlgorithmField::Invalid)
    }
    fn visit_f64<E>(self, _: f64) -> Result<AlgorithmField, E> {
        Ok(AlgorithmField::Invalid)
    }
    fn visit_str<E>(self, _: &str) -> Result<AlgorithmField, E> {
        Ok(AlgorithmField::Invalid)
    }
}

/// A scalar JSON value (`None`: a list or object, skipped unread).
struct Scalar(Option<Value>);

impl<'de> de::Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ScalarVisitor;
        impl<'de> Visitor<'de> for ScalarVisitor {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a scalar")
            }
            fn visit_str<E>(self, s: &str) -> Result<Scalar, E> {
                Ok(Scalar(Some(Value::from(s))))
            }
            fn visit_bool<E>(self, b: bool) -> Result<Scalar, E> {
                Ok(Scalar(Some(Value::from(b))))
            }
            fn visit_i64<E>(self, n: i64) -> Result<Scalar, E> {
                Ok(Scalar(Some(Value::from(n))))
            }
            fn visit_u64<E>(self, n: u64) -> Result<Scalar, E> {
                Ok(Scalar(Some(Value::from(n))))
            }
            fn visit_f64<E>(self, n: f64) -> Result<Scalar, E> {
                Ok(Scalar(Some(Value::from(n))))
            }
            fn visit_unit<E>(self) -> Result<Scalar, E> {
                Ok(Scalar(Some(Value::Null)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Scalar, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Scalar(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Scalar, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Scalar(None))
            }
        }
        d.deserialize_any(ScalarVisitor)
    }
}
