//! Durations written as in systemd and humantime: "30s", "10m", "1h", "7d"; ban lengths may
//! also be "permanent".

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Duration(pub std::time::Duration);

impl Duration {
    pub const fn from_secs(s: u64) -> Self {
        Duration(std::time::Duration::from_secs(s))
    }
    pub fn as_nanos(&self) -> u64 {
        self.0.as_nanos().min(u64::MAX as u128) as u64
    }
    pub fn is_zero(&self) -> bool {
        self.0.is_zero()
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map(Duration).map_err(|e| {
            serde::de::Error::custom(format!(
                "bad duration {s:?}: {e} (e.g. \"90s\", \"10m\", \"1h\", \"7d\")"
            ))
        })
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(self.0).to_string())
    }
}

/// How long a ban lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    For(Duration),
    Permanent,
}

impl Expiry {
    /// When a ban of this length made at `now` ends (`None`: until released).
    pub fn until(self, now: u64) -> Option<u64> {
        match self {
            Expiry::Permanent => None,
            Expiry::For(d) => Some(now.saturating_add(d.as_nanos())),
        }
    }
}

impl<'de> Deserialize<'de> for Expiry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s == "permanent" || s == "forever" {
            return Ok(Expiry::Permanent);
        }
        humantime::parse_duration(&s)
            .map(|d| Expiry::For(Duration(d)))
            .map_err(|e| {
                serde::de::Error::custom(format!(
                    "bad ban length {s:?}: {e} (a duration or \"permanent\")"
                ))
            })
    }
}

impl Serialize for Expiry {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Expiry::Permanent => s.serialize_str("permanent"),
            Expiry::For(d) => d.serialize(s),
        }
    }
}
