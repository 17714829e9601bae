//! A conventional layout: one LUN per volume, named `volume-<id>` in the
//! volume's pool, with the model update (`provider-location`) spelled
//! `<pool>/<lun name>`.
//!
//! The example drivers use it; a driver is free to lay volumes out any other
//! way, as long as it reads back the `provider-location` it wrote.
//!
//! Everything here is pure string handling: it runs natively in tests and
//! answers [`DriverError::InvalidArgument`] for anything malformed instead of
//! panicking.

use crate::{DriverError, LunAddress, Volume};

/// Prefix of the LUN name that holds a volume.
pub const VOLUME_LUN_PREFIX: &str = "volume-";

/// The longest volume id accepted, in bytes.
const MAX_ID_BYTES: usize = 128;

/// The LUN name for the volume `id`: `volume-<id>`.
///
/// The id must be a non-empty run of ASCII letters, digits, `-` and `_`, so
/// that the name can never climb out of its pool.
pub fn lun_name(id: &str) -> Result<String, DriverError> {
    let valid = !id.is_empty()
        && id.len() <= MAX_ID_BYTES
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !valid {
        return Err(DriverError::InvalidArgument(format!(
            "volume id {id:?} is not a run of letters, digits, '-' and '_'"
        )));
    }
    Ok(format!("{VOLUME_LUN_PREFIX}{id}"))
}

/// Where a new volume goes: `volume-<id>` in `volume.pool`, whatever its
/// `provider-location` says.
pub fn new_volume_lun(volume: &Volume) -> Result<LunAddress, DriverError> {
    check_pool(&volume.pool)?;
    Ok(LunAddress::new(volume.pool.clone(), lun_name(&volume.id)?))
}

/// Where an existing volume lives: its `provider-location` when it has one,
/// else `volume-<id>` in `volume.pool`.
///
/// A `provider-location` that is malformed or names another volume's LUN is
/// refused: acting on it could touch storage that is not this volume's.
pub fn volume_lun(volume: &Volume) -> Result<LunAddress, DriverError> {
    let Some(location) = volume.provider_location.as_deref() else {
        return new_volume_lun(volume);
    };
    // A managed LUN keeps the name it had; the host lets no two volumes
    // manage the same one.
    if let Some(managed) = location.strip_prefix(MANAGED) {
        return parse_provider_location(managed);
    }
    let address = parse_provider_location(location)?;
    let expected = lun_name(&volume.id)?;
    if address.name != expected {
        return Err(DriverError::InvalidArgument(format!(
            "provider location {location:?} does not name LUN {expected}"
        )));
    }
    Ok(address)
}

/// What starts the `provider-location` of a managed LUN.
const MANAGED: &str = "managed:";

/// Where `reference` points, for [`crate::Driver::manage_existing`]:
/// `<pool>/<name>`, or `<name>` in `volume.pool`. Names of this layout's
/// own LUNs (`volume-...`) are refused: they are volumes already.
pub fn managed_lun(volume: &Volume, reference: &str) -> Result<LunAddress, DriverError> {
    let address = if reference.contains('/') {
        parse_provider_location(reference)?
    } else {
        check_pool(&volume.pool)?;
        LunAddress::new(volume.pool.clone(), reference)
    };
    if address.name.is_empty() || address.name.starts_with("volume-") {
        return Err(DriverError::InvalidArgument(format!(
            "reference {reference:?} does not name a LUN outside this driver's volumes"
        )));
    }
    Ok(address)
}

/// The `provider-location` of a managed LUN at `address`.
pub fn managed_location(address: &LunAddress) -> String {
    format!("{MANAGED}{}", provider_location(address))
}

/// Manages the LUN `reference` names ([`managed_lun`]) as `volume`: it must
/// exist with a size that is a positive multiple of 512. Its data is left
/// as it is.
pub fn manage_lun(volume: &Volume, reference: &str) -> Result<crate::Managed, DriverError> {
    let address = managed_lun(volume, reference)?;
    let lun = crate::block::open_lun(&address)?;
    let size = lun.size();
    if size == 0 || size % 512 != 0 {
        return Err(DriverError::InvalidArgument(format!(
            "LUN {} holds {size} bytes, not a positive multiple of 512",
            provider_location(&address)
        )));
    }
    Ok(crate::Managed {
        size_bytes: size,
        model_update: Some(managed_location(&address)),
    })
}

/// The `provider-location` of `address`: `<pool>/<name>`.
pub fn provider_location(address: &LunAddress) -> String {
    format!("{}/{}", address.pool, address.name)
}

/// Parses a `provider-location` written by [`provider_location`].
pub fn parse_provider_location(location: &str) -> Result<LunAddress, DriverError> {
    let malformed = || {
        DriverError::InvalidArgument(format!(
            "provider location {location:?} is not <pool>/<lun name>"
        ))
    };
    let (pool, name) = location.split_once('/').ok_or_else(malformed)?;
    if name.is_empty() || name.contains('/') || check_pool(pool).is_err() {
        return Err(malformed());
    }
    Ok(LunAddress::new(pool, name))
}

fn check_pool(pool: &str) -> Result<(), DriverError> {
    if pool.is_empty() || pool.contains('/') || pool == "." || pool == ".." {
        return Err(DriverError::InvalidArgument(format!(
            "pool name {pool:?} is not a single path component"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn managed_luns_keep_their_names_and_volume_luns_are_refused() {
        let v = volume("0b7c", "default", None);
        let a = managed_lun(&v, "legacy-db").unwrap();
        assert_eq!((a.pool.as_str(), a.name.as_str()), ("default", "legacy-db"));
        let a = managed_lun(&v, "gold/old").unwrap();
        assert_eq!(managed_location(&a), "managed:gold/old");
        assert!(managed_lun(&v, "default/volume-1234").is_err());
        assert!(managed_lun(&v, "../x/y").is_err());
        let managed = volume("0b7c", "gold", Some("managed:gold/old"));
        let a = volume_lun(&managed).unwrap();
        assert_eq!((a.pool.as_str(), a.name.as_str()), ("gold", "old"));
    }

    fn volume(id: &str, pool: &str, location: Option<&str>) -> Volume {
        Volume {
            id: id.into(),
            name: "v".into(),
            size_bytes: 4096,
            pool: pool.into(),
            provider_location: location.map(Into::into),
        }
    }

    #[test]
    fn new_volume_goes_into_its_pool() {
        let a = new_volume_lun(&volume("abc-1", "gold", Some("x/y"))).unwrap();
        assert_eq!(a, LunAddress::new("gold", "volume-abc-1"));
        assert_eq!(provider_location(&a), "gold/volume-abc-1");
    }

    #[test]
    fn existing_volume_follows_its_provider_location() {
        let a = volume_lun(&volume("abc", "gold", Some("silver/volume-abc"))).unwrap();
        assert_eq!(a, LunAddress::new("silver", "volume-abc"));
        let b = volume_lun(&volume("abc", "gold", None)).unwrap();
        assert_eq!(b, LunAddress::new("gold", "volume-abc"));
    }

    #[test]
    fn refuses_malformed_input() {
        for location in [
            "",
            "/",
            "pool",
            "pool/",
            "/volume-abc",
            "a/b/c",
            "../volume-abc",
        ] {
            let err = volume_lun(&volume("abc", "gold", Some(location))).unwrap_err();
            assert_eq!(err.kind(), "invalid-argument", "{location:?}");
        }
        let err = volume_lun(&volume("abc", "gold", Some("gold/volume-other"))).unwrap_err();
        assert_eq!(err.kind(), "invalid-argument");
        for id in ["", "../x", "a/b", "a b", "é"] {
            assert!(lun_name(id).is_err(), "{id:?}");
        }
        assert!(new_volume_lun(&volume("abc", "..", None)).is_err());
        assert!(new_volume_lun(&volume("abc", "", None)).is_err());
    }
}
