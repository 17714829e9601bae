//! Where a volume lives, in Cinder's words: a pool is `HOST@ARRAY#POOL`
//! (`HOST` is `[cinder] host`), and a volume type names an array and pool.
//!
//! Each array brings one type named after it, for its first pool, and one
//! named `ARRAY#POOL` for each further pool: every location has exactly one
//! type, so a volume's type says where it lives and a retype to another
//! type is a migration there. A type's id is derived from its name, so it
//! stays the same across restarts and hosts.

use axum::http::StatusCode;
use uuid::Uuid;

use crate::api::error::ApiError;
use crate::service::ArrayPools;

/// An array and a pool on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The array.
    pub array: String,
    /// The pool.
    pub pool: String,
}

/// A volume type: a name for a location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeType {
    /// Stable id, from the name.
    pub id: Uuid,
    /// `ARRAY` or `ARRAY#POOL`.
    pub name: String,
    /// Where its volumes live.
    pub location: Location,
}

/// The namespace of type ids (a fixed random UUID).
const TYPE_NAMESPACE: Uuid = Uuid::from_u128(0x5f1c_a3e2_8d4b_4c1a_9e07_2b6f_d1c8_a410);

/// The type of a location on `arrays`.
pub fn type_name(arrays: &[ArrayPools], array: &str, pool: &str) -> String {
    let first = arrays
        .iter()
        .find(|a| a.name == array)
        .and_then(|a| a.pools.first());
    if first.is_some_and(|p| p == pool) {
        array.to_owned()
    } else {
        format!("{array}#{pool}")
    }
}

/// The id of the type named `name`.
pub fn type_id(name: &str) -> Uuid {
    Uuid::new_v5(&TYPE_NAMESPACE, name.as_bytes())
}

/// Every volume type, the arrays' order kept.
pub fn types(arrays: &[ArrayPools]) -> Vec<VolumeType> {
    let mut out = Vec::new();
    for a in arrays {
        for pool in &a.pools {
            let name = type_name(arrays, &a.name, pool);
            out.push(VolumeType {
                id: type_id(&name),
                name,
                location: Location {
                    array: a.name.clone(),
                    pool: pool.clone(),
                },
            });
        }
    }
    out
}

/// The type a client names, by id or name; `default` is the first type.
pub fn find_type(arrays: &[ArrayPools], wanted: &str) -> Result<VolumeType, ApiError> {
    let all = types(arrays);
    if wanted == "default" {
        return all.into_iter().next().ok_or_else(|| no_type(wanted));
    }
    all.into_iter()
        .find(|t| t.name == wanted || t.id.to_string() == wanted)
        .ok_or_else(|| no_type(wanted))
}

fn no_type(wanted: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "volume_type_not_found",
        format!(
            "volume type {:?} not found; each array is a type, and ARRAY#POOL for its other pools",
            crate::api::clip::echo(wanted)
        ),
    )
}

/// A pool's name as `cinder get-pools` lists it.
pub fn pool_name(host: &str, array: &str, pool: &str) -> String {
    format!("{host}@{array}#{pool}")
}

/// The location a Cinder host string names: `HOST@ARRAY#POOL`, or
/// `HOST@ARRAY` for the array's first pool. `HOST` must be this host's.
pub fn parse_host(host: &str, text: &str) -> Result<(String, Option<String>), ApiError> {
    let bad = |why: String| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_host",
            format!(
                "host {:?} {why}; pools are named {host}@ARRAY#POOL (cinder get-pools lists them)",
                crate::api::clip::echo(text)
            ),
        )
    };
    let Some((named_host, rest)) = text.split_once('@') else {
        return Err(bad("has no @".into()));
    };
    if named_host != host {
        return Err(bad(format!("is not this host ({host})")));
    }
    let (array, pool) = match rest.split_once('#') {
        Some((array, pool)) => (array, Some(pool)),
        None => (rest, None),
    };
    if array.is_empty() || pool.is_some_and(str::is_empty) {
        return Err(bad("names no array or an empty pool".into()));
    }
    Ok((array.to_owned(), pool.map(str::to_owned)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn array(name: &str, pools: &[&str]) -> ArrayPools {
        ArrayPools {
            name: name.to_owned(),
            pools: pools.iter().map(|p| (*p).to_owned()).collect(),
        }
    }

    #[test]
    fn each_location_has_one_type_and_each_type_one_location() {
        let arrays = [array("t1", &["default", "fast"]), array("p1", &["default"])];
        let names: Vec<String> = types(&arrays).into_iter().map(|t| t.name).collect();
        assert_eq!(names, ["t1", "t1#fast", "p1"]);
        let fast = find_type(&arrays, "t1#fast").unwrap();
        assert_eq!(
            (fast.location.array.as_str(), fast.location.pool.as_str()),
            ("t1", "fast")
        );
        assert_eq!(find_type(&arrays, &fast.id.to_string()).unwrap(), fast);
        assert_eq!(find_type(&arrays, "default").unwrap().name, "t1");
        assert_eq!(type_name(&arrays, "t1", "fast"), "t1#fast");
        assert_eq!(
            find_type(&arrays, "nope").unwrap_err().code(),
            "volume_type_not_found"
        );
        // Ids are stable: derived from the name alone.
        assert_eq!(types(&arrays)[0].id, Uuid::new_v5(&TYPE_NAMESPACE, b"t1"));
    }

    #[test]
    fn hosts_are_parsed_and_checked() {
        assert_eq!(
            parse_host("ferry", "ferry@t1#fast").unwrap(),
            ("t1".to_owned(), Some("fast".to_owned()))
        );
        assert_eq!(
            parse_host("ferry", "ferry@t1").unwrap(),
            ("t1".to_owned(), None)
        );
        for bad in [
            "t1#fast",
            "other@t1#fast",
            "ferry@#x",
            "ferry@t1#",
            "ferry@",
        ] {
            assert_eq!(
                parse_host("ferry", bad).unwrap_err().code(),
                "invalid_host",
                "{bad}"
            );
        }
        assert_eq!(pool_name("ferry", "t1", "default"), "ferry@t1#default");
    }
}
