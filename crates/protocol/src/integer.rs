//! Integer request fields that also accept a number with no fractional part (`100.0`): JSON
//! Schema's `integer` (the OpenAPI document's) includes them, and OpenAI's and vLLM's servers
//! accept them too. `100.5` stays an error, as do values outside the target type.
//! Use with `#[serde(default, deserialize_with = "crate::integer::...")]`.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{Error, Unexpected, Visitor};
use serde::{Deserialize, Deserializer};

/// One integer of type `T`, from a JSON integer or an integral float.
pub struct Int<T>(pub T);

struct IntVisitor<T>(PhantomData<T>);

impl<T: TryFrom<i128>> IntVisitor<T> {
    fn convert<E: Error>(&self, v: i128, unexpected: Unexpected<'_>) -> Result<T, E> {
        T::try_from(v).map_err(|_| E::invalid_value(unexpected, self))
    }
}

impl<'de, T: TryFrom<i128>> Visitor<'de> for IntVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "an integer of type {}", std::any::type_name::<T>())
    }

    fn visit_i64<E: Error>(self, v: i64) -> Result<T, E> {
        self.convert(i128::from(v), Unexpected::Signed(v))
    }

    fn visit_u64<E: Error>(self, v: u64) -> Result<T, E> {
        self.convert(i128::from(v), Unexpected::Unsigned(v))
    }

    fn visit_f64<E: Error>(self, v: f64) -> Result<T, E> {
        // Far outside every target type; the bound keeps the cast from saturating.
        if v.fract() != 0.0 || v.abs() >= 1e30 {
            return Err(E::invalid_type(Unexpected::Float(v), &self));
        }
        self.convert(v as i128, Unexpected::Float(v))
    }
}

impl<'de, T: TryFrom<i128>> Deserialize<'de> for Int<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(IntVisitor(PhantomData)).map(Int)
    }
}

pub fn option<'de, D: Deserializer<'de>, T: TryFrom<i128>>(d: D) -> Result<Option<T>, D::Error> {
    Ok(Option::<Int<T>>::deserialize(d)?.map(|Int(v)| v))
}

pub fn vec<'de, D: Deserializer<'de>, T: TryFrom<i128>>(d: D) -> Result<Vec<T>, D::Error> {
    Ok(Vec::<Int<T>>::deserialize(d)?
        .into_iter()
        .map(|Int(v)| v)
        .collect())
}

pub fn option_vec<'de, D: Deserializer<'de>, T: TryFrom<i128>>(
    d: D,
) -> Result<Option<Vec<T>>, D::Error> {
    Ok(Option::<Vec<Int<T>>>::deserialize(d)?.map(|v| v.into_iter().map(|Int(v)| v).collect()))
}

pub fn vec_vec<'de, D: Deserializer<'de>, T: TryFrom<i128>>(d: D) -> Result<Vec<Vec<T>>, D::Error> {
    Ok(Vec::<Vec<Int<T>>>::deserialize(d)?
        .into_iter()
        .map(|v| v.into_iter().map(|Int(v)| v).collect())
        .collect())
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Deserialize, Debug)]
    struct Body {
        #[serde(default, deserialize_with = "super::option")]
        n: Option<i64>,
        #[serde(default, deserialize_with = "super::option_vec")]
        ids: Option<Vec<u32>>,
    }

    fn parse(json: &str) -> Result<Body, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn integral_floats_are_integers() {
        let b = parse(r#"{"n": 100.0, "ids": [1, 2.0, 4294967295]}"#).unwrap();
        assert_eq!(b.n, Some(100));
        assert_eq!(b.ids, Some(vec![1, 2, u32::MAX]));
        let b = parse(r#"{"n": -3, "ids": null}"#).unwrap();
        assert_eq!((b.n, b.ids), (Some(-3), None));
        let b = parse("{}").unwrap();
        assert_eq!((b.n, b.ids), (None, None));
    }

    #[test]
    fn fractions_strings_and_out_of_range_values_are_refused() {
        for (json, why) in [
            (r#"{"n": 1.5}"#, "floating point `1.5`"),
            (r#"{"n": "1"}"#, "string \"1\""),
            (r#"{"n": 1e300}"#, "floating point"),
            (
                r#"{"n": 9223372036854775808}"#,
                "integer `9223372036854775808`",
            ),
            (r#"{"ids": [-1]}"#, "integer `-1`"),
            (r#"{"ids": [4294967296.0]}"#, "floating point `4294967296"),
        ] {
            let err = parse(json).unwrap_err();
            assert!(err.contains(why), "{json}: {err}");
        }
    }
}
